package harness

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
)

// Phases measures servers under several states of the system, for
// programs that are global (LSM, tracing) and so cannot be compared side
// by side in sibling cgroups. set(i) puts the system in state i (e.g.
// attaches variant i's programs) and returns what undoes it. A round is
// steps steps; in each step every state is visited in turn (order rotated
// every step) and, in it, every server runs one untimed warm-up chunk and
// then perSet chunks of n operations. A round's figure per state and
// server is the lower quartile of its chunks (BlockQuantile). The result
// is [state][server][round] ns/op. Toggling every few chunks keeps the
// states' measurements close in time: paired even on a noisy machine.
func Phases(tb testing.TB, servers []*load.Server, n int64, rounds, steps, perSet, states int, set func(state int) (undo func())) [][][]float64 {
	tb.Helper()
	out := make([][][]float64, states)
	for i := range out {
		out[i] = make([][]float64, len(servers))
	}
	for _, s := range servers { // first answer: warm-up done
		if _, _, _, err := s.Chunk(1); err != nil {
			tb.Fatal(err)
		}
	}
	var toggles int
	var toggleTime time.Duration
	step := 0
	for r := 0; r < rounds; r++ {
		block := make([][][]float64, states)
		for i := range block {
			block[i] = make([][]float64, len(servers))
		}
		for c := 0; c < steps; c++ {
			for k := 0; k < states; k++ {
				st := (k + step) % states
				t0 := time.Now()
				undo := set(st)
				toggleTime += time.Since(t0)
				for _, s := range servers { // warm-up after the change
					if _, _, _, err := s.Chunk(max(n/4, 1)); err != nil {
						tb.Fatal(err)
					}
				}
				for rep := 0; rep < perSet; rep++ {
					for j := range servers {
						i := (j + step + rep) % len(servers)
						ns, eperm, errs, err := servers[i].Chunk(n)
						if err != nil {
							tb.Fatal(err)
						}
						if eperm != 0 || errs != 0 {
							tb.Fatalf("load server %d: %d EPERM, %d other errors in a chunk", i, eperm, errs)
						}
						block[st][i] = append(block[st][i], float64(ns)/float64(n))
					}
				}
				t0 = time.Now()
				undo()
				toggleTime += time.Since(t0)
				toggles++
			}
			step++
		}
		for st := range block {
			for i := range servers {
				out[st][i] = append(out[st][i], report.Quantile(block[st][i], BlockQuantile))
			}
		}
	}
	tb.Logf("phases: %d state changes, %.1f ms each on average", toggles, float64(toggleTime.Microseconds())/1e3/float64(toggles))
	return out
}

// Instance loads a policy's programs and maps into the kernel with Assay's
// own code (policy.Load, session.Compile, kernel.Load: what `assay
// monitor` runs), scoped to scope, without attaching them; the benchmark
// attaches and detaches them between phases. Instances are closed when the
// benchmark ends. $BENCH_EBPF names a BPF object to use instead of the
// embedded one (to measure a candidate build).
func Instance(tb testing.TB, policyPath string, scope cgroup.Scope, trace bool) *kernel.Instance {
	tb.Helper()
	inst, err := TryInstance(tb, policyPath, scope, trace)
	if err != nil {
		tb.Fatal(err)
	}
	return inst
}

// TryInstance is Instance returning its error.
func TryInstance(tb testing.TB, policyPath string, scope cgroup.Scope, trace bool) (*kernel.Instance, error) {
	tb.Helper()
	return TryInstanceWith(tb, policyPath, scope, trace, nil)
}

// TryInstanceWith is TryInstance with edit applied to the compiled rules
// before loading (e.g. the resolver's address, which a session sets).
func TryInstanceWith(tb testing.TB, policyPath string, scope cgroup.Scope, trace bool, edit func(*kernel.Rules)) (*kernel.Instance, error) {
	tb.Helper()
	p, err := policy.Load(policyPath)
	if err != nil {
		return nil, err
	}
	rules, err := session.Compile(p)
	if err != nil {
		return nil, err
	}
	if edit != nil {
		edit(&rules)
	}
	inst, err := kernel.Load(kernel.Config{
		Rules:  rules,
		Scopes: []kernel.Scope{{Path: scope.Path, ID: scope.ID, Level: scope.Level}},
		Trace:  trace,
		Object: strings.TrimSpace(os.Getenv("BENCH_EBPF")),
	})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { inst.Close() })
	return inst, nil
}

// Attached attaches inst and returns its Detach, for Phases.
func Attached(tb testing.TB, inst *kernel.Instance) func() {
	tb.Helper()
	if err := inst.Attach(); err != nil {
		tb.Fatal(err)
	}
	return func() {
		if err := inst.Detach(); err != nil {
			tb.Fatal(err)
		}
	}
}
