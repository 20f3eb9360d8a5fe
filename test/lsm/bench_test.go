//go:build vmtest

package lsm_test

// Figure 2 of docs/BENCHMARKS.md: the cost of the BPF LSM file programs
// for open(2), measured in the guest (the host refuses BPF LSM). Run by
// `make bench` through `VMTEST_BENCH=LSM bash test/vm/run.sh`, which runs
// this binary with -test.run '^$' -test.bench instead of the tests. Rows
// are printed as report.Marker lines on the console; the host picks them
// out of the serial log. TCG inflates absolute times: only ratios count.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func init() {
	// This binary is re-executed as the benchmarks' load programs.
	load.MaybeRun()
}

func benchRecord(b *testing.B, r report.Row) {
	b.Helper()
	r.Figure += " (VM)"
	harness.Record(b, nil, true, r)
}

// BenchmarkLSMOpen measures openat+close of one file in a loop, by a
// process in the monitored cgroup and by one in a sibling cgroup (out of
// scope), against the same loops with nothing attached. LSM programs are
// global, so variants run one after the other: each policy is loaded once
// with Assay's loader and attached and detached between phases (rounds of
// "nothing / 10 + 10 rules / 100k rules" in rotated order, a few hundred
// milliseconds each); within a phase the processes run interleaved chunks.
//
//   - 10 exact + 10 directory rules, a file 2 levels below /tmp: the
//     exact lookup plus the ancestor walk to the root;
//   - 100k exact rules (no directory rule: one hash lookup);
//   - 10 + 10 rules, a file 30 directories deep: the walk visits all 30
//     ancestors and more (it is allowed: no rule above it);
//   - 10 + 10 rules, a file 30 directories below a denied directory: the
//     walk finds the rule 30 levels up; every open is refused (EPERM) and
//     reported.
func BenchmarkLSMOpen(b *testing.B) {
	bin := assayBin(b)
	root := filepath.Join(os.TempDir(), "assay-bench")
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	shallow, err := gen.WriteFile(root, "target", "x")
	if err != nil {
		b.Fatal(err)
	}
	deep, err := gen.MakeDeep(filepath.Join(root, "deep"), 30)
	if err != nil {
		b.Fatal(err)
	}
	denied, err := gen.MakeDeep(filepath.Join(root, "denied"), 30)
	if err != nil {
		b.Fatal(err)
	}
	// 10 exact + 10 directory rules elsewhere; one directory rule is the
	// top of the denied tree.
	var exact, dirs []string
	for i := 0; i < 10; i++ {
		f, err := gen.WriteFile(root, fmt.Sprintf("secret%d", i), "s")
		if err != nil {
			b.Fatal(err)
		}
		exact = append(exact, f)
		if i == 0 {
			dirs = append(dirs, filepath.Join(root, "denied"))
			continue
		}
		d := filepath.Join(root, fmt.Sprintf("private%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	small := harness.WritePolicy(b, "small.yaml", gen.FilePolicy(exact, dirs))
	nMany := 100000
	if harness.Quick() {
		nMany = 5000
	}
	many, err := gen.MakeFiles(filepath.Join(root, "many"), nMany)
	if err != nil {
		b.Fatal(err)
	}
	large := harness.WritePolicy(b, "large.yaml", gen.FilePolicy(many, nil))

	inCG, inFD := harness.Cgroup(b)
	_, outFD := harness.Cgroup(b)
	const n = 300 // open+close per chunk
	srv := func(fd int, path string) *load.Server {
		return harness.Server(b, fd, load.Options{Action: load.OpenClose, Target: path, Warmup: 2000, CPU: 1})
	}
	// 0 in scope shallow, 1 out shallow, 2 in deep, 3 out deep; 4 in denied, 5 out denied.
	servers := []*load.Server{srv(inFD, shallow), srv(outFD, shallow), srv(inFD, deep), srv(outFD, deep), srv(inFD, denied), srv(outFD, denied)}

	// Allowed opens: the policies' programs are loaded once, in this
	// process, with Assay's loader, and attached and detached between
	// phases (state 0: nothing attached; 1: 10 + 10 rules; 2: 100k).
	small1 := harness.Instance(b, small, inCG, false)
	large1 := harness.Instance(b, large, inCG, false)
	insts := []*kernel.Instance{nil, small1, large1}
	// State 3: a program on file_open that returns at once: the hook's
	// (the BPF trampoline's) own cost, which no program there can go below.
	nullProg, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "file_open", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		b.Fatalf("load a null lsm/file_open program: %v", err)
	}
	defer nullProg.Close()
	// Attaching LSM programs takes ~0.3 s under TCG: a few chunks per change.
	steps, perSet := 6, 3
	if harness.Quick() {
		steps, perSet = 2, 2
	}
	ph := harness.Phases(b, servers[:4], n, harness.Rounds(9), steps, perSet, 4, func(st int) func() {
		switch {
		case st == 3:
			l, err := link.AttachLSM(link.LSMOptions{Program: nullProg})
			if err != nil {
				b.Fatal(err)
			}
			return func() { l.Close() }
		case insts[st] == nil:
			return func() {}
		}
		return harness.Attached(b, insts[st])
	})
	// The programs' own time per call (bpf_stats, this process holds them),
	// each process alone, each instance attached in turn.
	progNS := map[string]float64{}
	harness.WithBPFStats(b, func() {
		for st, inst := range insts[1:] {
			undo := harness.Attached(b, inst)
			for i, name := range []string{"in shallow", "out shallow", "in deep", "out deep"} {
				before := harness.ProgRuns(b, os.Getpid())
				if _, _, _, err := servers[i].Chunk(n * 5); err != nil {
					b.Fatal(err)
				}
				progNS[fmt.Sprint(st+1, name)] = harness.PerRun(before, harness.ProgRuns(b, os.Getpid()))["file_open"]
			}
			undo()
		}
	})
	small1.Close()
	large1.Close()

	// Refused opens and start-up: the real `assay monitor`, which reads and
	// renders the events; phases alternate with no monitor.
	null := harness.DevNull(b)
	args := func(pol string) []string { return []string{"--policy", pol, "--cgroup", inCG.Path} }
	R := harness.Rounds(5)
	var baseD, monD [2][]float64
	var readySmall, readyLarge, hwmLarge []float64
	var mapsLarge map[string]uint64
	for r := 0; r < R; r++ {
		for k := 0; k < 2; k++ {
			if (k+r)%2 == 0 {
				v := harness.Paired(b, servers[4:], n, 1, harness.Chunks())
				baseD[0], baseD[1] = append(baseD[0], v[0][0]), append(baseD[1], v[1][0])
				continue
			}
			m := harness.StartMonitor(b, bin, null, args(small)...)
			readySmall = append(readySmall, ms(m.Ready))
			v := harness.Paired(b, servers[4:], n, 1, harness.Chunks(), true, false)
			monD[0], monD[1] = append(monD[0], v[0][0]), append(monD[1], v[1][0])
			m.Stop(b)
		}
	}
	for r := 0; r < min(R, 3); r++ {
		m := harness.StartMonitor(b, bin, null, args(large)...)
		readyLarge = append(readyLarge, ms(m.Ready))
		hwmLarge = append(hwmLarge, float64(harness.ProcStatusKiB(m.Pid(), "VmHWM"))/1024)
		if pb, err := harness.ReadProcBPF(m.Pid()); err == nil {
			mapsLarge = pb.Maps
		}
		m.Stop(b)
	}

	fig := "2 open, BPF LSM"
	add := func(cse, variant string, raw, base []float64, limit float64, note string) {
		row := report.Row{Figure: fig, Case: cse, Variant: variant, Unit: "ns/op"}
		row.SetOverhead(raw, base, limit)
		row.Note = note
		benchRecord(b, row)
	}
	toggled := fmt.Sprintf("%d rounds, programs attached in turn", len(ph[0][0]))
	stat := func(k string) string {
		return fmt.Sprintf("%s; file_open %.0f ns/run (bpf_stats, under TCG)", toggled, progNS[k])
	}
	benchRecord(b, report.Row{Figure: fig, Case: "open+close, file 2 levels below /tmp", Variant: "baseline (nothing attached)", Unit: "ns/op",
		Value: report.Median(ph[0][0]), Raw: ph[0][0]})
	add("open+close, file 2 levels below /tmp", "in scope, 10 exact + 10 dir rules", ph[1][0], ph[0][0], 5, stat("1in shallow"))
	add("open+close, file 2 levels below /tmp", "out of scope, 10 exact + 10 dir rules", ph[1][1], ph[0][1], 1, stat("1out shallow"))
	add("open+close, file 2 levels below /tmp", fmt.Sprintf("in scope, %dk exact rules", nMany/1000), ph[2][0], ph[0][0], 5, stat("2in shallow"))
	add("open+close, file 2 levels below /tmp", fmt.Sprintf("out of scope, %dk exact rules", nMany/1000), ph[2][1], ph[0][1], 1, stat("2out shallow"))
	add("open+close, file 2 levels below /tmp", "null program on lsm/file_open (the hook alone)", ph[3][0], ph[0][0], nan, toggled+"; a program that returns at once")
	benchRecord(b, report.Row{Figure: fig, Case: "open+close, file 30 dirs deep (allowed)", Variant: "baseline (nothing attached)", Unit: "ns/op",
		Value: report.Median(ph[0][2]), Raw: ph[0][2]})
	add("open+close, file 30 dirs deep (allowed)", "in scope, 10 + 10 rules: walk to the root", ph[1][2], ph[0][2], 5, stat("1in deep"))
	add("open+close, file 30 dirs deep (allowed)", "out of scope, 10 + 10 rules", ph[1][3], ph[0][3], 1, stat("1out deep"))
	add("open+close, file 30 dirs deep (allowed)", fmt.Sprintf("in scope, %dk exact rules (no walk)", nMany/1000), ph[2][2], ph[0][2], 5, stat("2in deep"))
	add("open+close, file 30 dirs deep (allowed)", "null program on lsm/file_open (the hook alone)", ph[3][2], ph[0][2], nan, toggled+"; a program that returns at once")
	viaMonitor := fmt.Sprintf("`assay monitor` in %d of %d alternating phases", R/2+R%2, R)
	add("open+close, file 30 dirs under a denied dir", "in scope: EPERM + event (walk finds the rule)", monD[0], baseD[0], nan,
		"refused and reported on every open (text to /dev/null); "+viaMonitor)
	add("open+close, file 30 dirs under a denied dir", "out of scope, 10 + 10 rules, with the monitor rendering", monD[1], baseD[1], nan,
		viaMonitor+"; not paired as tightly as the rows above")

	f5 := "5 policy scale"
	row := report.Row{Figure: f5, Case: fmt.Sprintf("%dk file rules", nMany/1000), Variant: "`assay monitor` start to enforcing (TCG)", Unit: "ms",
		Value: report.Median(readyLarge), Raw: readyLarge, Baseline: report.Median(readySmall), BaseRaw: readySmall}
	row.Note = fmt.Sprintf("baseline: the 10 + 10 rule policy; under TCG (several times slower than the host); peak RSS %.0f MiB; kernel map memory %s",
		report.Median(hwmLarge), fmtMapMem(mapsLarge))
	benchRecord(b, row)
}

var nan = math.NaN()

func ms(d interface{ Microseconds() int64 }) float64 { return float64(d.Microseconds()) / 1e3 }

func fmtMapMem(m map[string]uint64) string {
	var total uint64
	for _, v := range m {
		total += v
	}
	return fmt.Sprintf("%.1f MiB (file_rules %.1f MiB)", float64(total)/(1<<20), float64(m["file_rules"])/(1<<20))
}
