//go:build vmtest

package lsm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"testing"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// BenchmarkLSMWalkAndLandlock (figure 2, figure 8 files) measures, in the
// guest and in the same phases:
//
//   - the cost of the ancestor walk per level: files 0, 10, 20 and 30
//     directories below the benchmark's directory, opened in scope under
//     the 10 + 10 rule policy (allowed: the walk goes to the root); the
//     slope of the added time against depth is the walk's cost per level;
//   - the hook itself: a program that returns at once on lsm/file_open;
//   - Landlock, the peer: the same loops, out of Assay's scope, run by
//     processes that restricted themselves with Landlock (raw system calls,
//     as a small launcher would) to reading beneath the benchmark's
//     directory, against the same loops unrestricted (Landlock cannot be
//     removed from a process, so its processes run next to their
//     baselines in every phase);
//   - start-up: a Landlock launcher's set-up (spawn to exit of a load
//     program doing one open, with and without Landlock) and `assay
//     monitor` from exec to enforcing with the 10 + 10 rule policy.
func BenchmarkLSMWalkAndLandlock(b *testing.B) {
	bin := assayBin(b)
	root := filepath.Join(os.TempDir(), "assay-bench-walk")
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	depths := []int{0, 10, 20, 30}
	var files []string
	for _, d := range depths {
		f, err := gen.MakeDeep(filepath.Join(root, fmt.Sprintf("w%d", d)), d)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	var exact, dirs []string
	for i := 0; i < 10; i++ {
		f, err := gen.WriteFile(root, fmt.Sprintf("secret%d", i), "s")
		if err != nil {
			b.Fatal(err)
		}
		exact = append(exact, f)
		d := filepath.Join(root, fmt.Sprintf("private%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	small := harness.WritePolicy(b, "small.yaml", gen.FilePolicy(exact, dirs))
	inCG, inFD := harness.Cgroup(b)
	_, outFD := harness.Cgroup(b)
	const n = 300
	srv := func(fd int, path, landlock string) *load.Server {
		return harness.Server(b, fd, load.Options{Action: load.OpenClose, Target: path, Warmup: 2000, CPU: 1, Landlock: landlock})
	}
	var servers []*load.Server
	for _, f := range files {
		servers = append(servers, srv(inFD, f, ""))
	}
	last := files[len(files)-1]
	// Out of scope: plain and Landlock, at depth 0 and 30.
	nIn := len(servers)
	servers = append(servers, srv(outFD, files[0], ""), srv(outFD, files[0], root), srv(outFD, last, ""), srv(outFD, last, root))

	inst := harness.Instance(b, small, inCG, false)
	// Policy v2, default deny with the runtime baseline, reads allowed
	// beneath the benchmark's directory: the nearest-rule walk stops at that
	// rule, depth + 1 levels up. Measured when this build enforces v2 file
	// rules with BPF LSM (checked: a file outside every rule is refused).
	if err := os.MkdirAll(filepath.Join(os.TempDir(), "assay-bench-outside"), 0o755); err != nil {
		b.Fatal(err)
	}
	outside, err := gen.WriteFile(filepath.Join(os.TempDir(), "assay-bench-outside"), "x", "x")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(filepath.Dir(outside)) })
	v2pol := harness.WritePolicy(b, "v2.yaml", fmt.Sprintf("version: 2\nfiles:\n  default: deny\n  baseline: runtime\n  allow:\n    - {path: %s/, access: r}\nnetwork:\n  default: allow\n", root))
	v2, v2err := harness.TryInstance(b, v2pol, inCG, false)
	if v2err == nil {
		// A server started now (nothing attached: no exec under the
		// default-deny policy is needed) opens the file outside every rule
		// once with the policy attached.
		probe := harness.Server(b, inFD, load.Options{Action: load.OpenClose, Target: outside, Warmup: 1, CPU: -1})
		undo := harness.Attached(b, v2)
		_, eperm, _, err := probe.Chunk(1)
		undo()
		probe.Close()
		if err != nil || eperm != 1 {
			v2err = fmt.Errorf("a file outside every rule was not refused (%d EPERM, %v): v2 file rules are not enforced with BPF LSM in this build", eperm, err)
		}
	}
	states := 3
	if v2err == nil {
		states = 4
	} else {
		b.Logf("policy v2 rows skipped: %v", v2err)
	}
	nullProg, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "file_open", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		b.Fatalf("load a null lsm/file_open program: %v", err)
	}
	defer nullProg.Close()
	// Eight servers and four states: fewer, longer rounds than figure 2's.
	steps, perSet := 3, 2
	if harness.Quick() {
		steps = 2
	}
	ph := harness.Phases(b, servers, n, harness.Rounds(5), steps, perSet, states, func(st int) func() {
		switch st {
		case 3:
			return harness.Attached(b, v2)
		case 1:
			return harness.Attached(b, inst)
		case 2:
			l, err := link.AttachLSM(link.LSMOptions{Program: nullProg})
			if err != nil {
				b.Fatal(err)
			}
			return func() { l.Close() }
		}
		return func() {}
	})
	inst.Close()
	if v2 != nil {
		v2.Close()
	}

	fig := "2 open, BPF LSM"
	toggled := fmt.Sprintf("%d rounds; nothing, the v1 policy, a null file_open program (and the v2 policy) attached in turn", len(ph[0][0]))
	// Added ns per open at each depth, per round, and the slope.
	var xs, ys []float64
	for i, d := range depths {
		row := report.Row{Figure: fig, Case: fmt.Sprintf("open+close, file %d dirs below the bench dir", d), Variant: "in scope, 10 + 10 rules: walk to the root", Unit: "ns/op"}
		row.SetOverhead(ph[1][i], ph[0][i], nan)
		var added, nullAdded []float64
		for r := range ph[1][i] {
			added = append(added, ph[1][i][r]-ph[0][i][r])
			nullAdded = append(nullAdded, ph[2][i][r]-ph[0][i][r])
		}
		xs = append(xs, float64(d))
		ys = append(ys, report.Median(added))
		row.Note = fmt.Sprintf("%s; added %.0f ns/open (the null program: %.0f ns)", toggled, report.Median(added), report.Median(nullAdded))
		benchRecord(b, row)
	}
	slope, icpt := fitLine(xs, ys)
	benchRecord(b, report.Row{Figure: fig, Case: "the ancestor walk", Variant: "cost per directory level (slope over depths 0-30)", Unit: "ns/level", Value: slope,
		Note: fmt.Sprintf("v1 10 + 10 rules, walk to the root: least squares over depths %v of the added ns/open %.0f; intercept %.0f ns (the program's fixed cost at depth 0, under TCG)", depths, ys, icpt)})
	if states == 4 {
		var ys2 []float64
		for i, d := range depths {
			row := report.Row{Figure: fig, Case: fmt.Sprintf("open+close, file %d dirs below the bench dir", d), Variant: "in scope, v2 default deny + runtime baseline, read allowed beneath the bench dir", Unit: "ns/op"}
			row.SetOverhead(ph[3][i], ph[0][i], nan)
			var added []float64
			for r := range ph[3][i] {
				added = append(added, ph[3][i][r]-ph[0][i][r])
			}
			ys2 = append(ys2, report.Median(added))
			row.Note = fmt.Sprintf("%s; the nearest rule is %d levels up; added %.0f ns/open", toggled, d+1, report.Median(added))
			benchRecord(b, row)
		}
		slope2, icpt2 := fitLine(xs, ys2)
		benchRecord(b, report.Row{Figure: fig, Case: "the ancestor walk", Variant: "policy v2: cost per level of the nearest-rule walk (slope over depths 0-30)", Unit: "ns/level", Value: slope2,
			Note: fmt.Sprintf("least squares over depths %v of the added ns/open %.0f; intercept %.0f ns, under TCG", depths, ys2, icpt2)})
	} else {
		benchRecord(b, report.Row{Figure: fig, Case: "policy v2, default deny + runtime baseline", Variant: "not measured", Unit: "ns/op", Value: nan, Note: v2err.Error()})
	}

	f8 := "8 peers: files"
	for k, d := range []int{0, depths[len(depths)-1]} {
		plain, ll := nIn+2*k, nIn+2*k+1
		row := report.Row{Figure: f8, Case: fmt.Sprintf("open+close, file %d dirs below the bench dir", d), Variant: "Landlock: read allowed beneath the bench dir (raw syscalls, out of Assay's scope)", Unit: "ns/op"}
		row.SetOverhead(ph[0][ll], ph[0][plain], nan)
		row.Note = "a Landlock-restricted process next to an unrestricted one, in the phases with nothing attached"
		benchRecord(b, row)
		row = report.Row{Figure: f8, Case: fmt.Sprintf("open+close, file %d dirs below the bench dir", d), Variant: "assay BPF LSM: 10 + 10 rules, in scope", Unit: "ns/op"}
		i := 0
		if k == 1 {
			i = len(depths) - 1
		}
		row.SetOverhead(ph[1][i], ph[0][i], nan)
		row.Note = toggled
		benchRecord(b, row)
		if states == 4 {
			row = report.Row{Figure: f8, Case: fmt.Sprintf("open+close, file %d dirs below the bench dir", d), Variant: "assay BPF LSM: v2 default deny + runtime baseline, read allowed beneath the bench dir (the same allow-list)", Unit: "ns/op"}
			row.SetOverhead(ph[3][i], ph[0][i], nan)
			row.Note = toggled
			benchRecord(b, row)
		}
		row = report.Row{Figure: f8, Case: fmt.Sprintf("open+close, file %d dirs below the bench dir", d), Variant: "Landlock process while assay's policy is attached (both)", Unit: "ns/op"}
		row.SetOverhead(ph[1][ll], ph[1][plain], nan)
		row.Note = "out of Assay's scope: Landlock's cost plus Assay's out-of-scope check"
		benchRecord(b, row)
	}

	// Start-up.
	R := harness.Rounds(5)
	var plain, ll, mon []float64
	for r := 0; r < R; r++ {
		for _, with := range []string{"", root} {
			t := time.Now()
			res, err := load.Spawn(harness.Self(b), outFD, load.Options{Action: load.OpenClose, Target: files[0], N: 1, CPU: -1, Landlock: with})
			if err != nil || res.Errors != 0 {
				b.Fatalf("spawn (landlock %q): %v %+v", with, err, res)
			}
			if with == "" {
				plain = append(plain, ms(time.Since(t)))
			} else {
				ll = append(ll, ms(time.Since(t)))
			}
		}
	}
	null := harness.DevNull(b)
	for r := 0; r < min(R, 3); r++ {
		m := harness.StartMonitor(b, bin, null, "--policy", small, "--cgroup", inCG.Path)
		mon = append(mon, ms(m.Ready))
		m.Stop(b)
	}
	d := make([]float64, len(ll))
	for i := range d {
		d[i] = ll[i] - plain[i]
	}
	benchRecord(b, report.Row{Figure: f8, Case: "start-up", Variant: "Landlock launcher: create the ruleset, add the rule, restrict", Unit: "ms", Value: report.Median(d), Raw: ll, BaseRaw: plain, Baseline: report.Median(plain),
		Note: "spawn to exit of a process doing one open, with Landlock minus without (paired), under TCG"})
	benchRecord(b, report.Row{Figure: f8, Case: "start-up", Variant: "`assay monitor` exec to enforcing, 10 + 10 rules", Unit: "ms", Value: report.Median(mon), Raw: mon,
		Note: "loads and attaches the BPF LSM programs, under TCG"})
}

// fitLine is the least-squares line through (xs, ys): slope, intercept.
func fitLine(xs, ys []float64) (float64, float64) {
	var sx, sy, sxx, sxy float64
	n := float64(len(xs))
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	return slope, (sy - slope*sx) / n
}
