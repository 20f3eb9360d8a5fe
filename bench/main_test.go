// Package bench_test measures Assay's costs against a baseline measured in
// the same run: `make bench` (bench/bench.mk) runs these benchmarks once
// each (-benchtime 1x: every benchmark does its own interleaved rounds),
// then the BPF LSM figures in the QEMU guest, and writes
// docs/BENCHMARKS.md. See docs/BENCHMARKS.md for the method.
//
// Every figure is a median over rounds; baseline and monitored rounds are
// interleaved, and overheads are the median of per-round ratios. Timings
// are reported (b.ReportMetric, $BENCH_OUT rows), never asserted.
//
//	BENCH_OUT=rows.jsonl go test ./bench -run '^$' -bench . -benchtime 1x
//
// Environment: BENCH_OUT (rows as JSON lines), BENCH_ROUNDS (rounds per
// figure, default 9), BENCH_QUICK=1 (fewer operations per round, for a
// smoke run), ASSAY_BIN (a prebuilt assay; default: ./cmd/assay is built).
package bench_test

import (
	"math"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-bench-dns-client" {
		os.Exit(dnsClient(os.Args[2:]))
	}
	if os.Getenv("BENCH_MCP_ECHO") == "1" {
		mcpEcho()
		os.Exit(0)
	}
	load.MaybeRun()
	assaytest.Main(m)
}

var sink = report.NewSink(os.Getenv("BENCH_OUT"))

func record(b *testing.B, r report.Row) { b.Helper(); harness.Record(b, sink, false, r) }

func rounds() int              { return harness.Rounds(9) }
func chunks() int              { return harness.Chunks() }
func quick() bool              { return harness.Quick() }
func self(b *testing.B) string { return harness.Self(b) }

func privileged(b *testing.B) {
	b.Helper()
	assaytest.Privileged(b)
}

func benchCgroup(b *testing.B) (cgroup.Scope, int) { b.Helper(); return harness.Cgroup(b) }

func spawn(b *testing.B, cgfd int, o load.Options) load.Result {
	b.Helper()
	return harness.Spawn(b, cgfd, o)
}

func server(b *testing.B, cgfd int, o load.Options) *load.Server {
	b.Helper()
	return harness.Server(b, cgfd, o)
}

func paired(b *testing.B, servers []*load.Server, n int64, rounds, chunks int) [][]float64 {
	b.Helper()
	return harness.Paired(b, servers, n, rounds, chunks)
}

func writePolicy(b *testing.B, name, body string) string {
	b.Helper()
	return harness.WritePolicy(b, name, body)
}

func devNull(b *testing.B) *os.File { b.Helper(); return harness.DevNull(b) }

func monitorArgs(args ...string) []string { return harness.MonitorArgs(args...) }

// startMonitor runs the assay under test (`monitor ARGS...`), stdout to out.
func startMonitor(b *testing.B, out *os.File, args ...string) *harness.Monitor {
	b.Helper()
	return harness.StartMonitor(b, assaytest.Binary(b), out, args...)
}

func procStatusKiB(pid int, field string) int64 { return harness.ProcStatusKiB(pid, field) }

// udpSink binds a UDP socket that is never read: datagrams sent to it are
// dropped once its (small) receive buffer is full, which costs the sender
// the same in every round.
func udpSink(b *testing.B, addr string) netip.AddrPort {
	b.Helper()
	ap := netip.MustParseAddrPort(addr)
	fam := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: ap.Addr().As16()}
	if ap.Addr().Is4() {
		fam = unix.AF_INET
		sa = &unix.SockaddrInet4{Addr: ap.Addr().As4()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	if err := unix.Bind(fd, sa); err != nil {
		b.Fatal(err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		b.Fatal(err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	b.Fatal("udp sink: unexpected address")
	return netip.AddrPort{}
}

var nan = math.NaN()

// elapsed runs f and returns its wall time in ms.
func elapsed(f func()) float64 {
	t := time.Now()
	f()
	return float64(time.Since(t).Microseconds()) / 1e3
}

// loadCPU is the CPU load programs are pinned to ($BENCH_CPU; -1: none).
func loadCPU() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_CPU")); err == nil {
		return n
	}
	return 1
}
