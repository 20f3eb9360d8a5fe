package bench_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

var traceSummaryRE = regexp.MustCompile(`Tracepoint ringbuf: emitted=([0-9]+) dropped=([0-9]+)`)

// BenchmarkTrace is figure 3: what `--trace` (tp_btf/sys_exit, run on
// every system call of every task on the host, and
// tp_btf/sched_process_exec) costs a syscall-heavy loop (openat + close of
// one file), for a process in the scope (each open is an event, rendered as
// text to /dev/null by the monitor) and one outside it. The tracing
// programs are global, so the baseline cannot run next to the monitored
// loops. Out of scope, the monitor's programs are loaded once in this
// process (Assay's loader, the same object) and attached and detached
// between paired phases. In scope, rounds alternate "no monitor" and
// "assay monitor --trace --rate-limit 0" phases, the monitor rendering
// every event as text to /dev/null.
func BenchmarkTrace(b *testing.B) {
	privileged(b)
	file, err := gen.WriteFile(b.TempDir(), "traced-file", "x")
	if err != nil {
		b.Fatal(err)
	}
	pol := writePolicy(b, "small.yaml", gen.SmallNetPolicy())
	inCG, inFD := benchCgroup(b)
	_, outFD := benchCgroup(b)
	const n = 2000 // open+close per chunk (a few ms)
	o := load.Options{Action: load.OpenClose, Target: file, Warmup: 20000, CPU: loadCPU()}
	sIn := server(b, inFD, o)
	sOut := server(b, outFD, o)
	servers := []*load.Server{sIn, sOut}
	devnull := devNull(b)
	args := []string{"--policy", pol, "--cgroup", inCG.Path, "--trace", "--rate-limit", "0"}

	R := rounds()
	// Out of scope: the monitor's programs (loaded once, in this process,
	// with Assay's loader) attached and detached between phases: paired
	// rounds, no event involved. The third state is the floor: a program
	// that returns at once on the same hook (tp_btf/sys_exit), measured in
	// the same rounds.
	inst := harness.Instance(b, pol, inCG, true)
	null := nullProgram(b, ebpf.Tracing, ebpf.AttachTraceRawTp, "sys_exit")
	ph := harness.Phases(b, servers[1:], n, R, chunks(), 1, 3, func(st int) func() {
		switch st {
		case 1:
			return harness.Attached(b, inst)
		case 2:
			l, err := link.AttachTracing(link.TracingOptions{Program: null})
			if err != nil {
				b.Fatal(err)
			}
			return func() { l.Close() }
		}
		return func() {}
	})
	inst.Close()
	baseOut, trOut, floorOut := ph[0][0], ph[1][0], ph[2][0]

	// In scope: the real `assay monitor --trace`, which reads and renders
	// every event; phases alternate with no monitor.
	var baseIn, trIn []float64
	var emitted, dropped string
	for r := 0; r < R; r++ {
		for phase := 0; phase < 2; phase++ {
			if (phase+r)%2 == 0 {
				baseIn = append(baseIn, paired(b, servers[:1], n, 1, chunks())[0][0])
				continue
			}
			m := startMonitor(b, devnull, args...)
			trIn = append(trIn, paired(b, servers[:1], n, 1, chunks())[0][0])
			if s := traceSummaryRE.FindStringSubmatch(m.Stop(b)); s != nil {
				emitted, dropped = s[1], s[2]
			}
		}
	}

	// The programs' own time per run, each process alone (bpf_stats).
	m := startMonitor(b, devnull, args...)
	perProc := map[string]map[string]float64{}
	harness.WithBPFStats(b, func() {
		for name, s := range map[string]*load.Server{"in": sIn, "out": sOut} {
			before := harness.ProgRuns(b, m.Pid())
			if _, _, _, err := s.Chunk(n * 20); err != nil {
				b.Fatal(err)
			}
			perProc[name] = harness.PerRun(before, harness.ProgRuns(b, m.Pid()))
		}
	})
	m.Stop(b)

	row := report.Row{Figure: "3 trace", Case: "openat+close loop", Variant: "baseline (no monitor)", Unit: "ns/op", Raw: baseOut}
	row.Value = report.Median(baseOut)
	record(b, row)
	row = report.Row{Figure: "3 trace", Case: "openat+close loop", Variant: "--trace, out of scope", Unit: "ns/op"}
	row.SetOverhead(trOut, baseOut, nan)
	floor := row.JudgeAboveFloor(floorOut, 2)
	row.Note = fmt.Sprintf("%d paired rounds; floor (a null program on tp_btf/sys_exit, same rounds) %+.1f%%, so %+.1f points above it; per run (bpf_stats, which adds ~50 ns itself): %s", len(trOut), floor, *row.Overhead-floor, fmtRuns(perProc["out"]))
	record(b, row)
	fl := report.Row{Figure: "3 trace", Case: "openat+close loop", Variant: "null program on tp_btf/sys_exit (the floor, same rounds)", Unit: "ns/op"}
	fl.SetOverhead(floorOut, baseOut, nan)
	fl.Note = "a program that returns at once on --trace's own hook, attached in turn with it and with nothing"
	record(b, fl)
	row = report.Row{Figure: "3 trace", Case: "openat+close loop", Variant: "--trace, in scope (text to /dev/null)", Unit: "ns/op"}
	row.SetOverhead(trIn, baseIn, nan)
	row.Note = fmt.Sprintf("per run (bpf_stats): %s; last round's summary: emitted=%s dropped=%s",
		fmtRuns(perProc["in"]), emitted, dropped)
	record(b, row)
}

// fmtRuns lists the tracing programs' ns per run.
func fmtRuns(m map[string]float64) string {
	var parts []string
	for _, name := range []string{"trace_sys_enter", "trace_sys_exit"} {
		if v, ok := m[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f ns", name, v))
		}
	}
	return strings.Join(parts, ", ")
}
