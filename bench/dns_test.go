package bench_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/kernel"
)

// dnsQuery is an A query for name with id.
func dnsQuery(id uint16, name string) []byte {
	q := binary.BigEndian.AppendUint16(nil, id)
	q = append(q, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0) // RD; one question
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1) // root; A; IN
}

// dnsUpstream answers every A query on a loopback UDP socket with one
// record, 127.0.0.1, TTL 300: the test upstream of figure 10.
func dnsUpstream(b *testing.B) netip.AddrPort {
	b.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 17 {
				continue
			}
			q := buf[:n]
			end := 12
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5 // root label, QTYPE, QCLASS
			if end > n {
				continue
			}
			r := append([]byte(nil), q[:end]...)
			r[2], r[3] = 0x81, 0x80 // response, RD, RA, NOERROR
			r[6], r[7] = 0, 1       // one answer
			r[8], r[9], r[10], r[11] = 0, 0, 0, 0
			r = append(r, 0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 127, 0, 0, 1)
			c.WriteTo(r, from)
		}
	}()
	return netip.MustParseAddrPort(c.LocalAddr().String())
}

// dnsClient (the benchmark binary run with -bench-dns-client SERVER N) sends
// N A queries for ok.bench.test to SERVER, one at a time, and prints the
// round-trip times in µs as a JSON array.
func dnsClient(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: -bench-dns-client SERVER N")
		return 2
	}
	var n int
	fmt.Sscan(args[1], &n)
	c, err := net.Dial("udp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	buf := make([]byte, 1500)
	var us []float64
	for i := 0; i < n; i++ {
		q := dnsQuery(uint16(i), "ok.bench.test.")
		t := time.Now()
		c.SetDeadline(t.Add(5 * time.Second))
		if _, err := c.Write(q); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		m, err := c.Read(buf)
		if err != nil || m < 12 || binary.BigEndian.Uint16(buf) != uint16(i) || buf[3]&0x0f != 0 {
			fmt.Fprintln(os.Stderr, "bad answer", m, err)
			return 1
		}
		us = append(us, float64(time.Since(t).Nanoseconds())/1e3)
	}
	json.NewEncoder(os.Stdout).Encode(us)
	return 0
}

func runDNSClient(b *testing.B, argv []string) ([]float64, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%q: %w: %s", argv, err, trimTail(stderr.String(), 400))
	}
	var us []float64
	// assay run prints nothing on stdout but CMD's output: the last line.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &us); err != nil {
		return nil, fmt.Errorf("client output %q: %w", out, err)
	}
	return us, nil
}

// BenchmarkDNS is figure 10: the latency of a DNS lookup (A, UDP) made by a
// process under `assay run` with a policy that allows a name (its query,
// sent to 127.0.0.1:53, is redirected to assay's resolver, which forwards
// it to the upstream and learns the answer before releasing it), against
// the same client querying the upstream directly. The upstream is a
// loopback server in this process answering at once; nothing leaves the
// machine. Runs alternate; p50 and p99 over every query of a variant.
func BenchmarkDNS(b *testing.B) {
	privileged(b)
	up := dnsUpstream(b)
	dir, err := os.MkdirTemp("", "assay-bench-dns-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "dns-client")
	data, err := os.ReadFile(self(b))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		b.Fatal(err)
	}
	pol := filepath.Join(dir, "dns.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf("version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: \"*.bench.test\", ports: [9], id: 30}\ndns:\n  upstream: [\"%s\"]\n", up)), 0o644)
	n := 500
	if quick() {
		n = 100
	}
	var direct, viaAssay []float64
	var dRounds, aRounds []float64
	for r := 0; r < max(rounds()/3, 2); r++ {
		d, err := runDNSClient(b, []string{exe, "-bench-dns-client", up.String(), fmt.Sprint(n)})
		if err != nil {
			b.Fatal(err)
		}
		a, err := runDNSClient(b, []string{assaytest.Binary(b), "run", "--policy", pol, "--", exe, "-bench-dns-client", "127.0.0.1:53", fmt.Sprint(n)})
		if err != nil {
			if r == 0 {
				record(b, report.Row{Figure: "10 DNS", Case: "A lookup over UDP", Variant: "through `assay run`'s resolver", Unit: "µs", Value: nan,
					Note: fmt.Sprintf("not measured: %v (does this assay enforce host entries?)", err)})
				return
			}
			b.Fatal(err)
		}
		direct, viaAssay = append(direct, d...), append(viaAssay, a...)
		dRounds, aRounds = append(dRounds, report.Median(d)), append(aRounds, report.Median(a))
	}
	sort.Float64s(direct)
	sort.Float64s(viaAssay)
	row := report.Row{Figure: "10 DNS", Case: "A lookup over UDP, p50", Variant: "upstream directly (baseline)", Unit: "µs", Value: report.Quantile(direct, 0.5), Raw: dRounds,
		Note: fmt.Sprintf("p99 %.0f µs; %d queries, one at a time, a loopback upstream answering at once", report.Quantile(direct, 0.99), len(direct))}
	record(b, row)
	row = report.Row{Figure: "10 DNS", Case: "A lookup over UDP, p50", Variant: "through `assay run`'s resolver (redirected from 127.0.0.1:53)", Unit: "µs", Value: report.Quantile(viaAssay, 0.5), Raw: aRounds,
		Baseline: report.Quantile(direct, 0.5), BaseRaw: dRounds,
		Note: fmt.Sprintf("p99 %.0f µs (upstream directly: %.0f); %d queries; each answer learned into the kernel before release", report.Quantile(viaAssay, 0.99), report.Quantile(direct, 0.99), len(viaAssay))}
	record(b, row)
	row = report.Row{Figure: "10 DNS", Case: "A lookup over UDP, p99", Variant: "through `assay run`'s resolver", Unit: "µs", Value: report.Quantile(viaAssay, 0.99),
		Baseline: report.Quantile(direct, 0.99)}
	record(b, row)
}

func trimTail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// BenchmarkDNSLearned (figure 10): connect and sendto to a learned address
// with 100k learned addresses in the kernel (50k IPv4, 50k IPv6, the most
// each family's map holds being 64k), under a version 2 policy whose only
// allow entry is a host entry, against a cgroup without Assay, in paired
// rounds. The addresses are written with the product's own call
// (kernel.Instance.PutDNS, what the resolver does for each answer),
// including 127.0.0.1 and ::1 on the listeners' ports.
func BenchmarkDNSLearned(b *testing.B) {
	privileged(b)
	tcp4 := assaytest.ListenTCP(b, "127.0.0.1:0")
	udp4 := udpSink(b, "127.0.0.1:0")
	udp6 := udpSink(b, "[::1]:0")
	pol := writePolicy(b, "learned.yaml", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: \"*.bench.test\", id: 30}\ndns:\n  upstream: [\"127.0.0.1:9\"]\n")
	_, baseFD := benchCgroup(b)
	cg, fd := benchCgroup(b)
	// The session gives the resolver's address; none listens there: no
	// DNS query is made.
	inst, err := harness.TryInstanceWith(b, pol, cg, false, func(r *kernel.Rules) {
		r.DNS = &kernel.DNS{Resolver4: netip.MustParseAddrPort("127.0.0.1:9")}
	})
	if err != nil {
		record(b, report.Row{Figure: "10 DNS", Case: "connect to a learned address", Variant: "100k learned addresses", Unit: "ns/op", Value: nan,
			Note: fmt.Sprintf("not measured: %v", err)})
		return
	}
	n := 50000
	if quick() {
		n = 5000
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		var b16 [16]byte
		b16[0], b16[1], b16[13], b16[14], b16[15] = 0x20, 0x01, byte(i>>16), byte(i>>8), byte(i)
		for _, a := range []netip.Addr{a4, netip.AddrFrom16(b16)} {
			if err := inst.PutDNS(kernel.DNSKey{Addr: a}, 30); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, ap := range []netip.AddrPort{tcp4.Addr, udp4, udp6} {
		if err := inst.PutDNS(kernel.DNSKey{Addr: ap.Addr(), Port: ap.Port()}, 30); err != nil {
			b.Fatal(err)
		}
	}
	if err := inst.InvalidateVerdicts(); err != nil {
		b.Fatal(err)
	}
	fill := time.Since(t0)
	if err := inst.Attach(); err != nil {
		b.Fatal(err)
	}
	count, _ := inst.DNSEntries()
	R := rounds()
	for _, c := range []struct {
		name, action, target string
		n                    int64
	}{
		{"tcp4 connect+close to a learned address", load.TCPConnect, tcp4.String(), 100},
		{"udp4 sendto to a learned address", load.UDPSendto, udp4.String(), 1000},
		{"udp6 sendto to a learned address", load.UDPSendto, udp6.String(), 1000},
	} {
		servers := []*load.Server{
			server(b, baseFD, load.Options{Action: c.action, Target: c.target, Warmup: c.n * 5, CPU: loadCPU()}),
			server(b, fd, load.Options{Action: c.action, Target: c.target, Warmup: c.n * 5, CPU: loadCPU()}),
		}
		res := paired(b, servers, c.n, R, chunks())
		for _, s := range servers {
			s.Close()
		}
		row := report.Row{Figure: "10 DNS", Case: c.name, Variant: fmt.Sprintf("v2 host entry, %d learned addresses", count), Unit: "ns/op"}
		row.SetOverhead(res[1], res[0], nan)
		row.Note = fmt.Sprintf("%d paired rounds against a cgroup without Assay; %d PutDNS calls took %v", R, 2*n+3, fill.Round(time.Millisecond))
		record(b, row)
	}
}
