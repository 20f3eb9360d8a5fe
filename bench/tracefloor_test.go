package bench_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// statsOverhead attaches a null program, runs one chunk with the kernel's
// BPF run-time statistics on, and returns the ns per run they report for
// a program that does nothing: what bpf_stats itself adds to each run.
func statsOverhead(b *testing.B, attach func() (link.Link, error), s *load.Server) float64 {
	l, err := attach()
	if err != nil {
		return 0
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return 0
	}
	defer p.Close()
	var ns float64
	harness.WithBPFStats(b, func() {
		st0, err0 := p.Stats()
		if _, _, _, err := s.Chunk(20000); err != nil {
			b.Fatal(err)
		}
		st1, err1 := p.Stats()
		if err0 == nil && err1 == nil && st1.RunCount > st0.RunCount {
			ns = float64(st1.Runtime-st0.Runtime) / float64(st1.RunCount-st0.RunCount)
		}
	})
	return ns
}

// nullProgram is "return 0": a program that costs nothing itself, so
// that what remains is the cost of the hook it is attached to.
func nullProgram(b *testing.B, typ ebpf.ProgramType, at ebpf.AttachType, to string) *ebpf.Program {
	b.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: typ, AttachType: at, AttachTo: to, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		b.Fatalf("load a null %v program: %v", typ, err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// BenchmarkTraceFloor bounds figure 3: the cost of attaching a program
// that does nothing to the system-call hooks an observation path can use
// on this host (fentry and kprobes are refused or absent), for the same
// openat+close loop, out of any scope. Attached and detached in turn
// between chunks by this process, so the rounds are paired. Assay's
// tracing path (tp_btf/sys_exit) cannot cost less than its row.
func BenchmarkTraceFloor(b *testing.B) {
	privileged(b)
	f, err := os.CreateTemp(b.TempDir(), "floor")
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	_, fd := benchCgroup(b)
	s := server(b, fd, load.Options{Action: load.OpenClose, Target: f.Name(), Warmup: 20000, CPU: loadCPU()})
	hooks := []struct {
		name   string
		attach func() (link.Link, error)
	}{
		{"tp_btf/sys_exit (Assay's hook)", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: nullProgram(b, ebpf.Tracing, ebpf.AttachTraceRawTp, "sys_exit")})
		}},
		{"tp_btf/sys_enter", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: nullProgram(b, ebpf.Tracing, ebpf.AttachTraceRawTp, "sys_enter")})
		}},
		{"raw_tp/sys_enter", func() (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: nullProgram(b, ebpf.RawTracepoint, 0, "")})
		}},
		{"tracepoint/syscalls/sys_enter_openat (openat only)", func() (link.Link, error) {
			return link.Tracepoint("syscalls", "sys_enter_openat", nullProgram(b, ebpf.TracePoint, 0, ""), nil)
		}},
	}
	const n = 2000
	R := rounds()
	for _, h := range hooks {
		l, err := h.attach()
		if err != nil {
			b.Logf("%s: cannot attach (%v): skipped", h.name, err)
			continue
		}
		l.Close()
		var base, on []float64
		for r := 0; r < R; r++ {
			base = append(base, paired(b, []*load.Server{s}, n, 1, chunks())[0][0])
			l, err := h.attach()
			if err != nil {
				b.Fatal(err)
			}
			on = append(on, paired(b, []*load.Server{s}, n, 1, chunks())[0][0])
			l.Close()
		}
		row := report.Row{Figure: "3 trace", Case: "openat+close loop", Variant: "null program on " + h.name, Unit: "ns/op"}
		row.SetOverhead(on, base, nan)
		row.Note = fmt.Sprintf("the hook's own cost: a program that returns at once, %d paired rounds", R)
		if stats := statsOverhead(b, h.attach, s); stats > 0 {
			row.Note += fmt.Sprintf("; bpf_stats reports %.0f ns per run of this empty program (its own measuring cost)", stats)
		}
		record(b, row)
	}
}
