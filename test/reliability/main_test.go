// Package reliability_test checks, on this host, the promises Assay makes
// when things go wrong or get hostile: pinned enforcement that outlives the
// monitor (and unpinned enforcement that does not), live policy reloads
// under load, hostile policy files and process names, a sandboxed process
// trying to leave its cgroup, floods of denials, and faults (the cgroup
// removed, bpffs unmounted, the output pipe closed, the events disk full).
// It needs root (CI=true turns a skip into a failure). The BPF-LSM (file
// rule) counterparts run in the QEMU guest: test/lsm/reliability_test.go.
//
//	CI=true go test ./test/reliability/ -count=1 -v
//
// ASSAY_BIN selects a prebuilt binary; by default ./cmd/assay is built once.
package reliability_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/kernel"
)

func TestMain(m *testing.M) { assaytest.Main(m) }

// eventTimeout bounds the wait for an event line after the probe that
// caused it has exited.
const eventTimeout = 10 * time.Second

// writePolicy writes a policy file (fmt.Sprintf(format, args...)) into a
// fresh temporary directory and returns its path.
func writePolicy(t *testing.T, format string, args ...any) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	writeAtomic(t, p, fmt.Sprintf(format, args...))
	return p
}

// writeAtomic replaces path with content in one rename, so that a reader
// (a monitor re-reading its policy on SIGHUP) sees the old file or the new
// one, never a partial write.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func requireEPERM(t *testing.T, what string, r assaytest.ProbeResult) {
	t.Helper()
	if r.Errno != "EPERM" {
		t.Fatalf("%s: want EPERM, got errno %q (err %q)", what, r.Errno, r.Err)
	}
}

func requireOK(t *testing.T, what string, r assaytest.ProbeResult) {
	t.Helper()
	if !r.Ok() {
		t.Fatalf("%s: want success, got errno %q (err %q)", what, r.Errno, r.Err)
	}
}

// listen returns a loopback TCP listener and its address for probes.
func listen(t *testing.T) (*assaytest.TCPListener, string) {
	t.Helper()
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	return l, l.String()
}

// distinctListeners returns n loopback listeners with distinct ports.
func distinctListeners(t *testing.T, n int) []*assaytest.TCPListener {
	t.Helper()
	seen := map[uint16]bool{}
	var out []*assaytest.TCPListener
	for len(out) < n {
		l := assaytest.ListenTCP(t, "127.0.0.1:0")
		if !seen[l.Port()] {
			seen[l.Port()] = true
			out = append(out, l)
		}
	}
	return out
}

// requireAccepted checks that l accepted the connection the probe made.
func requireAccepted(t *testing.T, l *assaytest.TCPListener, r assaytest.ProbeResult) {
	t.Helper()
	from := l.WaitAccept(t, 5*time.Second)
	local := r.LocalAddr()
	if want := netip.AddrPortFrom(local.Addr().Unmap(), local.Port()); from != want {
		t.Fatalf("listener %s accepted a connection from %s, want the probe's %s", l.Addr, from, want)
	}
}

// pinName returns a fresh instance name; whatever is pinned under it is
// detached when the test ends (a failed test must not leave enforcement
// behind).
func pinName(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "reltest-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if pinned(name) {
			t.Logf("instance %s still pinned at the end of the test: detaching it", name)
			if res := assaytest.Run(t, "detach", name); res.ExitCode != 0 {
				t.Errorf("detach %s: %s", name, res.StderrText())
			}
		}
	})
	return name
}

// pinned reports whether the instance's pins exist in this mount namespace.
func pinned(name string) bool {
	_, err := os.Stat(filepath.Join(kernel.PinRoot, name))
	return err == nil
}

// hasLine reports whether some line contains substr.
func hasLine(lines []string, substr string) bool {
	for _, l := range lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// vmRSS returns the resident set size of pid in bytes (VmRSS of
// /proc/PID/status), 0 when it cannot be read.
func vmRSS(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb uint64
			fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}

// proc is a process whose stdout and stderr lines are collected as they
// come, for the cases assaytest.StartMonitor does not cover (a monitor
// inside another mount namespace, `assay run` with a flood).
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout []string
	stderr []string
	change chan struct{}
	exited chan struct{}
}

func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, cmd: cmd, change: make(chan struct{}), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", cmd.Args, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.read(stdout, &p.stdout) }()
	go func() { defer wg.Done(); p.read(stderr, &p.stderr) }()
	go func() {
		wg.Wait()
		_ = cmd.Wait()
		close(p.exited)
		p.notify()
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			t.Logf("%q still running at the end of the test: killing it", cmd.Args)
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *proc) read(r io.Reader, into *[]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, _ := assaytest.Unmark(sc.Text())
		p.mu.Lock()
		*into = append(*into, line)
		p.mu.Unlock()
		p.notify()
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *proc) notify() {
	p.mu.Lock()
	close(p.change)
	p.change = make(chan struct{})
	p.mu.Unlock()
}

// waitStderr waits for a stderr line containing substr and returns it.
func (p *proc) waitStderr(substr string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		change := p.change
		for _, l := range p.stderr {
			if strings.Contains(l, substr) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-change:
		case <-p.exited:
			p.mu.Lock()
			found := hasLine(p.stderr, substr)
			p.mu.Unlock()
			if !found {
				p.t.Fatalf("%q exited (status %d) without a stderr line with %q; stderr:\n%s", p.cmd.Args, p.cmd.ProcessState.ExitCode(), substr, p.stderrText())
			}
		case <-deadline:
			p.t.Fatalf("no stderr line with %q after %v; stderr:\n%s", substr, timeout, p.stderrText())
		}
	}
}

func (p *proc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "\n")
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Fatalf("%q did not exit within %v: killed; stderr:\n%s", p.cmd.Args, timeout, p.stderrText())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) lines() (stdout, stderr []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stdout...), append([]string(nil), p.stderr...)
}
