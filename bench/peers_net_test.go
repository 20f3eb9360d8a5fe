package bench_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
)

// nft runs `nft -f file` with the cgroup2 mount at /sys/fs/cgroup, where
// nft resolves `socket cgroupv2` paths (on a hybrid host, cgroup2 is
// elsewhere: bind-mounted there in a private mount namespace).
func nft(b *testing.B, file string) {
	b.Helper()
	mnt, err := cgroup.Mount()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("nft", "-f", file)
	if filepath.Clean(mnt) != "/sys/fs/cgroup" {
		cmd = exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /sys/fs/cgroup && exec nft -f "$2"`, "sh", mnt, file)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("nft -f %s: %v: %s", file, err, out)
	}
}

func nftCommand(b *testing.B, cmd string) {
	b.Helper()
	f := filepath.Join(b.TempDir(), "cmd.nft")
	if err := os.WriteFile(f, []byte(cmd+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	nft(b, f)
}

// BenchmarkPeerNftables compares figure 1's rules with what a user could
// run instead: the same 100k CIDRs + 1k ports enforced for one cgroup by
// nftables (`socket cgroupv2` jumping to a chain of interval-set and port
// lookups, in the output hook; Debian's nft). In the same phases, toggled
// in turn: nothing, the nftables rule, Assay's programs (loaded once with
// Assay's loader, attached and detached). Measured: connect and unconnected
// sendto for a process in that cgroup, and sendto from another cgroup
// (nftables judges every packet of the host; Assay's programs run only for
// the cgroups they are attached to); and the time to load the rules.
func BenchmarkPeerNftables(b *testing.B) {
	privileged(b)
	if _, err := exec.LookPath("nft"); err != nil {
		b.Fatalf("nft not found (make bench-deps): %v", err)
	}
	tcp4 := assaytest.ListenTCP(b, "127.0.0.1:0")
	udp4 := udpSink(b, "127.0.0.1:0")
	udp6 := udpSink(b, "[::1]:0")
	keep := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	keepPorts := []uint16{tcp4.Port(), udp4.Port(), udp6.Port()}
	v4, v6, ports := gen.NetRules(50000, 50000, 1000, keep, keepPorts, false)
	pol := writePolicy(b, "large.yaml", gen.NetPolicy(50000, 50000, 1000, keep, keepPorts, false))
	ruleset := writePolicy(b, "ruleset.nft", gen.NftRuleset(v4, v6, ports))
	cg, fd := benchCgroup(b)
	_, otherFD := benchCgroup(b)
	mnt, err := cgroup.Mount()
	if err != nil {
		b.Fatal(err)
	}
	rel, err := filepath.Rel(mnt, cg.Path)
	if err != nil {
		b.Fatal(err)
	}
	jump := writePolicy(b, "jump.nft", gen.NftJump(rel, cg.Level))
	drop := func() { _ = exec.Command("nft", "delete", "table", "inet", "assay_bench").Run() }
	drop()
	b.Cleanup(drop)

	// Rule-load time: the table with its sets, three times; the jump rule.
	var nftLoad []float64
	for i := 0; i < 3; i++ {
		drop()
		nftLoad = append(nftLoad, elapsed(func() { nft(b, ruleset) }))
	}
	nftJump := elapsed(func() { nft(b, jump) })
	nftCommand(b, "flush chain inet assay_bench out")
	var assayLoad []float64
	var inst = harness.Instance(b, pol, cg, false)
	for i := 0; i < 2; i++ {
		assayLoad = append(assayLoad, elapsed(func() { harness.Instance(b, pol, cg, false).Close() }))
	}
	assayLoad = append(assayLoad, elapsed(func() { inst.Close(); inst = harness.Instance(b, pol, cg, false) }))

	// Both refuse a denied port for the cgroup (and only for it).
	denied := fmt.Sprintf("127.0.0.1:%d", ports[0])
	check := func(name string, fd int, want int64) {
		r := spawn(b, fd, load.Options{Action: load.UDPSendto, Target: denied, N: 1, CPU: -1})
		if r.EPERM != want {
			b.Fatalf("%s: sendto %s from the cgroup: %d EPERM, want %d (%+v)", name, denied, r.EPERM, want, r)
		}
	}
	nft(b, jump)
	check("nftables", fd, 1)
	check("nftables, another cgroup", otherFD, 0)
	nftCommand(b, "flush chain inet assay_bench out")
	undo := harness.Attached(b, inst)
	check("assay", fd, 1)
	undo()

	states := []string{"nothing", "nftables", "assay"}
	set := func(st int) func() {
		switch st {
		case 1:
			nft(b, jump)
			return func() { nftCommand(b, "flush chain inet assay_bench out") }
		case 2:
			return harness.Attached(b, inst)
		}
		return func() {}
	}
	R := rounds()
	type kase struct {
		name, action, target string
		n                    int64
		fds                  []int
		who                  []string
	}
	for _, c := range []kase{
		{"tcp4 connect+close", load.TCPConnect, tcp4.String(), 100, []int{fd}, []string{""}},
		{"udp4 sendto", load.UDPSendto, udp4.String(), 1000, []int{fd, otherFD}, []string{"", ", another cgroup's traffic"}},
		{"udp6 sendto", load.UDPSendto, udp6.String(), 1000, []int{fd}, []string{""}},
	} {
		var servers []*load.Server
		for _, f := range c.fds {
			servers = append(servers, server(b, f, load.Options{Action: c.action, Target: c.target, Warmup: c.n * 5, CPU: loadCPU()}))
		}
		ph := harness.Phases(b, servers, c.n, R, chunks(), 1, len(states), set)
		for si := range servers {
			row := report.Row{Figure: "8 peers: network", Case: c.name + c.who[si], Variant: "baseline (no rules)", Unit: "ns/op", Raw: ph[0][si]}
			row.Value = report.Median(row.Raw)
			record(b, row)
			for st := 1; st < len(states); st++ {
				row := report.Row{Figure: "8 peers: network", Case: c.name + c.who[si], Unit: "ns/op"}
				if st == 1 {
					row.Variant = "nftables: 100k CIDRs + 1k ports (socket cgroupv2, interval sets)"
				} else {
					row.Variant = "assay: 100k CIDRs + 1k ports"
				}
				row.SetOverhead(ph[st][si], ph[0][si], nan)
				row.Note = fmt.Sprintf("%d rounds, the three states toggled in turn", R)
				record(b, row)
			}
		}
		for _, s := range servers {
			s.Close()
		}
	}
	row := report.Row{Figure: "8 peers: network", Case: "rule load, 100k CIDRs + 1k ports", Variant: "nftables: `nft -f` (table, sets, chains)", Unit: "ms", Raw: nftLoad}
	row.Value = report.Median(nftLoad)
	row.Note = fmt.Sprintf("then the cgroup's jump rule: %.0f ms (nft resolves the cgroup path)", nftJump)
	record(b, row)
	row = report.Row{Figure: "8 peers: network", Case: "rule load, 100k CIDRs + 1k ports", Variant: "assay: policy.Load + Compile + kernel.Load", Unit: "ms", Raw: assayLoad}
	row.Value = report.Median(assayLoad)
	row.Note = "parse the YAML policy, compile, create and fill the maps, load the programs (not attached)"
	record(b, row)
}
