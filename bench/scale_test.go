package bench_test

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
)

// noCacheObject is a build of the BPF object without the verdict cache
// ($BENCH_NOCACHE_OBJ: bench/bench.sh compiles it with -DASSAY_NO_VCACHE),
// for before/after rows measured in the same run; "" when not given.
func noCacheObject() string { return os.Getenv("BENCH_NOCACHE_OBJ") }

// BenchmarkConnectScale is the cost of judging against the number of
// rules: unconnected UDP sendto (IPv4 and IPv6) from sibling cgroups under
// policies of 10 to 100k CIDRs (half IPv4, half IPv6) plus 1k ports, with
// the verdict cache and, when $BENCH_NOCACHE_OBJ is set, without it, all
// in the same paired rounds against a cgroup without Assay.
func BenchmarkConnectScale(b *testing.B) {
	privileged(b)
	udp4 := udpSink(b, "127.0.0.1:0")
	udp6 := udpSink(b, "[::1]:0")
	keep := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	keepPorts := []uint16{udp4.Port(), udp6.Port()}
	counts := []int{10, 100, 1000, 10000, 100000}
	objs := []string{""}
	if o := noCacheObject(); o != "" {
		objs = append(objs, o)
	}
	type variant struct {
		name  string
		count int
		cache bool
		fd    int
	}
	var vs []variant
	_, fd := benchCgroup(b)
	vs = append(vs, variant{name: "baseline (no Assay)", fd: fd})
	for _, c := range counts {
		pol := writePolicy(b, fmt.Sprintf("n%d.yaml", c), gen.NetPolicy(c/2, c-c/2, 1000, keep, keepPorts, false))
		for _, obj := range objs {
			cg, fd := benchCgroup(b)
			args := []string{"--policy", pol, "--cgroup", cg.Path}
			name := fmt.Sprintf("%d CIDRs + 1k ports", c)
			if obj != "" {
				args = append(args, "--ebpf", obj)
				name += ", verdict cache off"
			}
			m := assaytest.StartMonitor(b, monitorArgs(args...)...)
			defer m.Stop()
			vs = append(vs, variant{name, c, obj == "", fd})
		}
	}
	R := rounds()
	for _, t := range []struct{ name, target string }{{"udp4 sendto", udp4.String()}, {"udp6 sendto", udp6.String()}} {
		var servers []*load.Server
		for _, v := range vs {
			servers = append(servers, server(b, v.fd, load.Options{Action: load.UDPSendto, Target: t.target, Warmup: 5000, CPU: loadCPU()}))
		}
		res := paired(b, servers, 1000, R, chunks())
		for _, s := range servers {
			s.Close()
		}
		row := report.Row{Figure: "1 connect", Case: t.name + ", against rule count", Variant: vs[0].name, Unit: "ns/op", Raw: res[0]}
		row.Value = report.Median(res[0])
		record(b, row)
		for i := 1; i < len(vs); i++ {
			row := report.Row{Figure: "1 connect", Case: t.name + ", against rule count", Variant: vs[i].name, Unit: "ns/op"}
			row.SetOverhead(res[i], res[0], nan)
			row.Note = fmt.Sprintf("%d paired rounds, all rule counts side by side (sibling cgroups)", R)
			record(b, row)
		}
	}
	_ = harness.Rounds
}
