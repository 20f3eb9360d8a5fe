// Package harness is the machinery Assay's benchmarks share, on the host
// (bench/) and in the QEMU guest (test/lsm, build tag vmtest): leaf cgroups,
// served load programs driven in interleaved chunks, `assay monitor`
// processes whose output goes to a file or /dev/null, and result rows.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/cgroup"
)

// Rounds is the number of rounds per figure: $BENCH_ROUNDS, default def.
func Rounds(def int) int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return def
}

// Quick reports $BENCH_QUICK=1: fewer operations, for a smoke run.
func Quick() bool { return os.Getenv("BENCH_QUICK") == "1" }

// Chunks is the number of paired chunks per round.
func Chunks() int {
	if Quick() {
		return 4
	}
	return 20
}

// Cgroup creates a leaf cgroup "assay-bench-<hex>" under the cgroup2 root,
// removed (with anything left in it) when the benchmark ends, and an open
// descriptor of it for clone3(CLONE_INTO_CGROUP).
func Cgroup(tb testing.TB) (cgroup.Scope, int) {
	tb.Helper()
	s, err := cgroup.CreateLeaf("", "assay-bench")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := s.Open()
	if err != nil {
		cgroup.Remove(s)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		f.Close()
		if err := cgroup.Remove(s); err != nil {
			tb.Errorf("remove %s: %v", s.Path, err)
		}
	})
	return s, int(f.Fd())
}

// Self is the running binary, re-executed as load programs (its start-up
// must call load.MaybeRun).
func Self(tb testing.TB) string {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return exe
}

// Spawn runs a load program to completion in the cgroup open at cgfd (-1:
// the caller's own).
func Spawn(tb testing.TB, cgfd int, o load.Options) load.Result {
	tb.Helper()
	res, err := load.Spawn(Self(tb), cgfd, o)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// Server starts a served load program in the cgroup open at cgfd, ended
// when the benchmark ends.
func Server(tb testing.TB, cgfd int, o load.Options) *load.Server {
	tb.Helper()
	s, err := load.StartServer(Self(tb), cgfd, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// BlockQuantile is the statistic of a round's chunks: their lower quartile.
// Interference from the rest of a shared machine only ever adds time, so
// the faster chunks of a round are the least disturbed ones; every variant
// gets the same treatment, and figures are medians over rounds.
var BlockQuantile = 0.25

// Paired drives servers in turn: rounds blocks of chunks chunks each; in
// every chunk each server runs n operations, in an order rotated every
// chunk. It returns, per server, one ns/op per block: the lower quartile
// of the block's chunks (BlockQuantile). Chunks of a few milliseconds taken back to back make the
// comparison paired: a burst of noise from the rest of the machine lands
// on neighbouring chunks of every variant alike. A chunk with a failed
// operation fails the benchmark, except EPERM where allowEPERM[i].
func Paired(tb testing.TB, servers []*load.Server, n int64, rounds, chunks int, allowEPERM ...bool) [][]float64 {
	tb.Helper()
	out := make([][]float64, len(servers))
	for _, s := range servers { // first answer: warm-up done
		if _, _, _, err := s.Chunk(1); err != nil {
			tb.Fatal(err)
		}
	}
	k := 0
	for r := 0; r < rounds; r++ {
		block := make([][]float64, len(servers))
		for c := 0; c < chunks; c++ {
			for j := range servers {
				i := (j + k) % len(servers)
				ns, eperm, errs, err := servers[i].Chunk(n)
				if err != nil {
					tb.Fatal(err)
				}
				okEPERM := i < len(allowEPERM) && allowEPERM[i]
				if errs != 0 || (eperm != 0 && !okEPERM) {
					tb.Fatalf("load server %d: %d EPERM, %d other errors in a chunk", i, eperm, errs)
				}
				block[i] = append(block[i], float64(ns)/float64(n))
			}
			k++
		}
		for i := range servers {
			out[i] = append(out[i], report.Quantile(block[i], BlockQuantile))
		}
	}
	return out
}

// WritePolicy writes a policy into the benchmark's temporary directory.
func WritePolicy(tb testing.TB, name, body string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// DevNull is /dev/null open for writing until the benchmark ends.
func DevNull(tb testing.TB) *os.File {
	tb.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// MonitorArgs is "monitor ARGS..." plus $BENCH_MONITOR_ARGS (e.g.
// "--ebpf /tmp/x.o", to measure a candidate BPF object).
func MonitorArgs(args ...string) []string {
	out := append([]string{"monitor"}, args...)
	return append(out, strings.Fields(os.Getenv("BENCH_MONITOR_ARGS"))...)
}

// Monitor is an `assay monitor` whose events go to a file (or /dev/null)
// rather than to a pipe the harness would have to read.
type Monitor struct {
	cmd    *exec.Cmd
	stderr *lineBuffer
	exited chan struct{}
	// Ready is how long the monitor took from exec to its readiness line.
	Ready time.Duration
}

type lineBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	s := l.buf.String()
	if strings.Contains(s, "assay: enforcing") || strings.Contains(s, "assay: auditing") {
		l.once.Do(func() { close(l.ready) })
	}
	return len(p), nil
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// ReadyTimeout bounds a monitor's start (long: 100k rules under TCG).
var ReadyTimeout = 5 * time.Minute

// StartMonitor runs `BIN monitor ARGS...` with stdout to out and waits for
// its readiness line. It is stopped (SIGINT) when the benchmark ends
// unless Stop was called.
func StartMonitor(tb testing.TB, bin string, out *os.File, args ...string) *Monitor {
	tb.Helper()
	m := &Monitor{stderr: &lineBuffer{ready: make(chan struct{})}, exited: make(chan struct{})}
	m.cmd = exec.Command(bin, MonitorArgs(args...)...)
	m.cmd.Stdout = out
	m.cmd.Stderr = m.stderr
	t0 := time.Now()
	if err := m.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.exited) }()
	tb.Cleanup(func() { m.Stop(tb) })
	select {
	case <-m.stderr.ready:
		m.Ready = time.Since(t0)
	case <-m.exited:
		tb.Fatalf("assay monitor %q exited before it was ready: %s", args, m.stderr.String())
	case <-time.After(ReadyTimeout):
		m.cmd.Process.Kill()
		tb.Fatalf("assay monitor %q not ready after %v: %s", args, ReadyTimeout, m.stderr.String())
	}
	return m
}

// Pid is the monitor's process id.
func (m *Monitor) Pid() int { return m.cmd.Process.Pid }

// Stop sends SIGINT and waits; it returns the monitor's stderr.
func (m *Monitor) Stop(tb testing.TB) string {
	select {
	case <-m.exited:
		return m.stderr.String()
	default:
	}
	m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.exited:
	case <-time.After(60 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		tb.Errorf("assay monitor did not stop within 60s: killed")
	}
	return m.stderr.String()
}

// ProcStatusKiB reads a "Name: N kB" field of /proc/PID/status (-1 if
// absent).
func ProcStatusKiB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			n, _ := strconv.ParseInt(string(bytes.Fields(v)[0]), 10, 64)
			return n
		}
	}
	return -1
}

// Record adds a row to sink (may be nil), reports it as benchmark metrics
// when tb is a *testing.B, logs it, and, with console set, prints it as a
// marker line on stdout (how the guest hands rows to the host).
func Record(tb testing.TB, sink *report.Sink, console bool, r report.Row) {
	tb.Helper()
	if sink != nil {
		if err := sink.Add(r); err != nil {
			tb.Fatal(err)
		}
	}
	if b, ok := tb.(*testing.B); ok {
		unit := strings.NewReplacer(" ", "_", "/", "-").Replace(r.Case + "|" + r.Variant)
		b.ReportMetric(r.Value, unit+"|"+strings.ReplaceAll(r.Unit, " ", "_"))
		if r.Overhead != nil {
			b.ReportMetric(*r.Overhead, unit+"|overhead_%")
		}
	}
	ov := ""
	if r.Overhead != nil {
		ov = fmt.Sprintf(" overhead %s (IQR %.1f pts)", report.FmtPct(r.Overhead), *r.Spread)
	}
	tb.Logf("%s | %s | %s: %s %s (baseline %s)%s %s %s %s", r.Figure, r.Case, r.Variant,
		report.Fmt(r.Value), r.Unit, report.Fmt(r.Baseline), ov, r.Target, r.Met, r.Note)
	if console {
		fmt.Println(r.Line())
	}
}

// MappedBPFKiB is the resident size of a process's mappings of BPF maps
// (ring buffers: the kernel's pages mapped into the reader, the data area
// twice), from /proc/PID/smaps.
func MappedBPFKiB(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return -1
	}
	var total int64
	inMap := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			inMap = len(f) >= 6 && f[5] == "anon_inode:bpf-map"
			continue
		}
		if inMap && len(f) >= 2 && f[0] == "Rss:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n
		}
	}
	return total
}
