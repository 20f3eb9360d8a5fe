package bench_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// BenchmarkConnect is figure 1: the cost the cgroup sock_addr programs add
// to connect(2) and to an unconnected sendto(2), for a process in the
// monitored cgroup. Three sibling cgroups are measured in interleaved
// rounds: one without Assay (baseline), one under a 10-rule policy, one
// under 100k CIDRs (half IPv4, half IPv6, including every sibling prefix
// along the path of the loopback address, so the trie lookup is the
// deepest possible) and 1k ports. Every connection and datagram is allowed
// (the figure is the cost of judging, not of refusing).
func BenchmarkConnect(b *testing.B) {
	privileged(b)
	tcp4 := assaytest.ListenTCP(b, "127.0.0.1:0")
	tcp6 := assaytest.ListenTCP(b, "[::1]:0")
	udp4 := udpSink(b, "127.0.0.1:0")
	udp6 := udpSink(b, "[::1]:0")
	keep := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	keepPorts := []uint16{tcp4.Port(), tcp6.Port(), udp4.Port(), udp6.Port()}

	small := writePolicy(b, "small.yaml", gen.SmallNetPolicy())
	large := writePolicy(b, "large.yaml", gen.NetPolicy(50000, 50000, 1000, keep, keepPorts, false))
	worst := writePolicy(b, "worst.yaml", gen.NetPolicy(50000, 50000, 1000, keep, keepPorts, true))

	type variant struct {
		name string
		fd   int
		mon  *assaytest.Monitor
	}
	variants := []variant{{name: "baseline"}}
	_, variants[0].fd = benchCgroup(b)
	pols := []struct{ name, policy, obj string }{
		{"10 rules", small, ""},
		{"100k CIDRs + 1k ports", large, ""},
		{"100k CIDRs + 1k ports, deepest trie path", worst, ""},
	}
	if o := noCacheObject(); o != "" {
		// Miss 1's before and after in the same run.
		pols = append(pols, struct{ name, policy, obj string }{"100k CIDRs + 1k ports, verdict cache off (before)", large, o})
	}
	for _, v := range pols {
		cg, fd := benchCgroup(b)
		args := []string{"--policy", v.policy, "--cgroup", cg.Path}
		if v.obj != "" {
			args = append(args, "--ebpf", v.obj)
		}
		m := assaytest.StartMonitor(b, monitorArgs(args...)...)
		defer m.Stop()
		variants = append(variants, variant{v.name, fd, m})
	}
	{
		// The floor: programs that return "allow" at once on the same four
		// hooks: what any program there costs on this machine.
		cg, fd := benchCgroup(b)
		for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg} {
			p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupSockAddr, AttachType: at, License: "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			l, err := link.AttachCgroup(link.CgroupOptions{Path: cg.Path, Attach: at, Program: p})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
		}
		variants = append(variants, variant{name: "null programs on the same hooks (the floor)", fd: fd})
	}

	cases := []struct {
		name   string
		action string
		target string
		n      int64
		prog   string
	}{
		// n: operations per chunk (a few ms).
		{"tcp4 connect+close", load.TCPConnect, tcp4.String(), 100, "connect4"},
		{"tcp6 connect+close", load.TCPConnect, tcp6.String(), 100, "connect6"},
		{"udp4 sendto", load.UDPSendto, udp4.String(), 1000, "sendmsg4"},
		{"udp6 sendto", load.UDPSendto, udp6.String(), 1000, "sendmsg6"},
	}
	R := rounds()
	res := make([][][]float64, len(cases)) // case, variant, round
	b.ResetTimer()
	for ci, c := range cases {
		servers := make([]*load.Server, len(variants))
		for vi, v := range variants {
			servers[vi] = server(b, v.fd, load.Options{Action: c.action, Target: c.target, Warmup: c.n * 5, CPU: loadCPU()})
		}
		res[ci] = paired(b, servers, c.n, R, 2*chunks()) // loopback TCP is the noisiest figure: twice the chunks
		for _, s := range servers {
			s.Close()
		}
	}
	// The programs' own run time per call (bpf_stats), apart from the
	// timing above: collecting it adds two clock reads per run.
	progNS := make([][]float64, len(cases)) // case, variant
	harness.WithBPFStats(b, func() {
		for ci, c := range cases {
			progNS[ci] = make([]float64, len(variants))
			for vi, v := range variants {
				if v.mon == nil {
					continue
				}
				before := harness.ProgRuns(b, v.mon.Pid())
				spawn(b, v.fd, load.Options{Action: c.action, Target: c.target, N: c.n * 20, CPU: loadCPU()})
				progNS[ci][vi] = harness.PerRun(before, harness.ProgRuns(b, v.mon.Pid()))[c.prog]
			}
		}
	})
	b.StopTimer()
	for ci, c := range cases {
		row := report.Row{Figure: "1 connect", Case: c.name, Variant: "baseline (no Assay)", Unit: "ns/op"}
		row.Raw = res[ci][0]
		row.Value = report.Median(row.Raw)
		record(b, row)
		for vi := 1; vi < len(variants); vi++ {
			row := report.Row{Figure: "1 connect", Case: c.name, Variant: variants[vi].name, Unit: "ns/op"}
			limit := nan
			if vi == 2 {
				limit = 3
			}
			row.SetOverhead(res[ci][vi], res[ci][0], limit)
			row.Note = fmt.Sprintf("%s program: %.0f ns/run (bpf_stats)", c.prog, progNS[ci][vi])
			if variants[vi].mon == nil {
				row.Note = "programs that return at once: the hook's own cost, which no program there can go below"
			}
			record(b, row)
		}
	}
}
