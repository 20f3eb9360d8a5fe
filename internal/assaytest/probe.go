// The test side of probes: run one in a cgroup and read its report.

package assaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
)

// probeEnv names the action a re-executed test binary performs.
const probeEnv = "ASSAY_PROBE"

// ProbeTimeout bounds one probe process: a hang guard sized for a busy
// machine like ReadyTimeout and StopTimeout (measured: `assay policy check`
// on TestHostilePolicyFiles' largest element count, 1.4 s of CPU, took 20 s
// of wall clock at a load average of 24).
var ProbeTimeout = Scaled(2 * time.Minute)

// ProbeResult is what a probe process reports: one JSON line on its stdout.
type ProbeResult struct {
	// PID is the probe's process id; TID the thread that made the system
	// calls under test (the probe keeps its main goroutine on the main
	// thread, so TID == PID); Comm its /proc/self/comm. Events from the
	// probe carry these.
	PID  int    `json:"pid"`
	TID  int    `json:"tid"`
	Comm string `json:"comm"`
	// Errno names the error of the operation under test ("EPERM",
	// "ECONNREFUSED", ...); "" when it succeeded. Err is its text (for
	// exec: the command's stderr).
	Errno string `json:"errno"`
	Err   string `json:"err"`
	// Out is the action's output: for connect and sendto the socket's
	// local address after the call ("127.0.0.1:40000"), for open r the
	// bytes read, for exec the command's stdout.
	Out string `json:"out"`

	// connect-loop: Attempts connects were made, N of them got EPERM and
	// Other got another error (or succeeded).
	Attempts int `json:"attempts,omitempty"`
	N        int `json:"n,omitempty"`
	Other    int `json:"other,omitempty"`

	// exec: the command's pid and exit status (-1 if it did not run or
	// was killed by a signal).
	ChildPID int `json:"child_pid,omitempty"`
	Exit     int `json:"exit"`

	// spawn-grandchild: the result is the grandchild's, and Via is the pid
	// of the probe that forked it.
	Via int `json:"via,omitempty"`

	// exec-rusage: the command's peak resident set size in bytes
	// (getrusage ru_maxrss of the child, which includes this probe's own
	// small footprint at fork: the child shares its memory until exec).
	MaxRSS int64 `json:"max_rss,omitempty"`
	// exec-rusage: the command's CPU time (user plus system, all its
	// threads), which unlike the wall clock does not grow with the load
	// of the machine.
	CPU time.Duration `json:"cpu_ns,omitempty"`

	// leave-cgroup: one line per step, e.g. "/sys/fs/cgroup/cgroup.procs:
	// EACCES" (or ": ok" when the write succeeded), then "cgroup: PATH",
	// the probe's cgroup v2 path after the attempts.
	Steps []string `json:"steps,omitempty"`
}

// Ok reports whether the operation succeeded.
func (r ProbeResult) Ok() bool { return r.Errno == "" && r.Err == "" }

// LocalAddr parses Out as the socket's local address (connect, sendto).
func (r ProbeResult) LocalAddr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.Out)
	return ap
}

// Probe runs the test binary again as a probe process performing action,
// placed directly into scope at fork (clone3 CLONE_INTO_CGROUP), or left in
// the test's own cgroup when scope is nil, and returns its report. The
// actions and their arguments:
//
//	connect tcp4|tcp6 ADDR:PORT        socket(2)+connect(2); tcp6 with an
//	                                   ::ffff:a.b.c.d address connects an
//	                                   AF_INET6 socket to the mapped address
//	sendto udp4|udp6 ADDR:PORT [DATA]  unconnected sendto(2) of DATA
//	net METHOD NETWORK ADDR:PORT [BIND] connect, sendto, TCP Fast Open or
//	                                   io_uring connect over TCP, UDP or
//	                                   MPTCP (see probeNet)
//	connect-loop N tcp4|tcp6 ADDR:PORT N connects; N/Other count EPERMs
//	open PATH r|w                      open(2) read-only (and read) or write-only
//	reopen PATH                        open(2) PATH O_PATH, then open
//	                                   /proc/self/fd/N read-only (and read)
//	open-deep DIR N NAME               openat(2) O_PATH down DIR/n/n/... (N
//	                                   levels of "n"), then NAME read-only
//	link OLD NEW | rename OLD NEW      link(2) / rename(2)
//	exec ARGV...                       run a command, report exit status/errno
//	cat FILE...                        exec cat FILE...
//	spawn-grandchild ACTION ARGS...    fork+exec a probe doing ACTION, report its result
//	exec-rusage ARGV...                exec, and report the command's peak
//	                                   RSS (MaxRSS) and CPU time (CPU):
//	                                   measured from a fresh probe, not from
//	                                   the (large) test process
//	connect-until STOP tcp4|tcp6 ADDR:PORT
//	                                   connects until the file STOP exists
//	                                   (creating STOP.ready after the first);
//	                                   Attempts, N (EPERM) and Other as in
//	                                   connect-loop, Err the last other error
//	open-until STOP PATH               the same with open(2) PATH read-only:
//	                                   N counts EPERM, Other anything else
//	set-comm NAME ACTION ARGS...       prctl(PR_SET_NAME, NAME) (the kernel
//	                                   keeps 15 bytes), then ACTION
//	as-user UID GID ACTION ARGS...     drop every group and switch to UID/GID
//	                                   (all threads), then ACTION
//	leave-cgroup tcp4|tcp6 ADDR:PORT PROCS...
//	                                   write its pid to each cgroup.procs file
//	                                   PROCS (Steps), then connect(2) (Errno)
//
// set-comm and as-user run ACTION in the same process, so they compose:
// as-user 65534 65534 leave-cgroup ...
//
// A probe that cannot run its action at all (bad arguments) fails the test.
func Probe(t testing.TB, scope *cgroup.Scope, action string, args ...string) ProbeResult {
	t.Helper()
	return ProbeWith(t, scope, nil, action, args...)
}

// ProbeWith is Probe with descriptors passed to the probe: files[i] is
// its descriptor 3+i (for actions on descriptors opened elsewhere, such
// as mmap-exec-fd).
func ProbeWith(t testing.TB, scope *cgroup.Scope, files []*os.File, action string, args ...string) ProbeResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = probeEnviron(action)
	cmd.ExtraFiles = files
	if scope != nil {
		f, err := scope.Open()
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		defer f.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	where := "outside the test cgroups"
	if scope != nil {
		where = "in " + scope.Path
	}
	if ctx.Err() != nil {
		t.Fatalf("probe %s %q (%s) timed out after %v; stderr:\n%s", action, args, where, ProbeTimeout, stderr.Bytes())
	}
	if err != nil {
		t.Fatalf("probe %s %q (%s): %v; stderr:\n%s", action, args, where, err, stderr.Bytes())
	}
	res, err := parseProbe(stdout.Bytes())
	if err != nil {
		t.Fatalf("probe %s %q (%s): %v; stdout:\n%s\nstderr:\n%s", action, args, where, err, stdout.Bytes(), stderr.Bytes())
	}
	if res.Via == 0 && res.PID != cmd.Process.Pid {
		t.Fatalf("probe %s reported pid %d, started as %d", action, res.PID, cmd.Process.Pid)
	}
	return res
}

func probeEnviron(action string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, probeEnv+"=") {
			env = append(env, kv)
		}
	}
	return append(env, probeEnv+"="+action)
}

func parseProbe(out []byte) (ProbeResult, error) {
	var res ProbeResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if last == "" {
		return res, errors.New("no report on stdout")
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		return res, fmt.Errorf("bad report: %v", err)
	}
	return res, nil
}

// RunningProbe is a probe process started by [StartProbe].
type RunningProbe struct {
	t              testing.TB
	cmd            *exec.Cmd
	action         string
	args           []string
	where          string
	stdout, stderr bytes.Buffer
	done           chan error
	res            *ProbeResult
}

// StartProbe starts a probe like [Probe] and returns without waiting for
// it: for long-running actions (connect-until, open-until) that run while
// the test does something else. Call Wait, from the test's goroutine, for
// its report; a probe not waited for is killed when the test ends.
func StartProbe(t testing.TB, scope *cgroup.Scope, action string, args ...string) *RunningProbe {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	p := &RunningProbe{t: t, action: action, args: args, where: "outside the test cgroups", done: make(chan error, 1)}
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = probeEnviron(action)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if scope != nil {
		f, err := scope.Open()
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		defer f.Close()
		p.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		p.where = "in " + scope.Path
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("probe %s %q (%s): %v", action, args, p.where, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.res == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Pid is the probe's process id.
func (p *RunningProbe) Pid() int { return p.cmd.Process.Pid }

// Wait waits up to ProbeTimeout for the probe to exit and returns its
// report; it fails the test if the probe fails or times out. Later calls
// return the same report.
func (p *RunningProbe) Wait() ProbeResult {
	p.t.Helper()
	if p.res != nil {
		return *p.res
	}
	var err error
	select {
	case err = <-p.done:
	case <-time.After(ProbeTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.res = &ProbeResult{}
		p.t.Fatalf("probe %s %q (%s) still running %v after Wait: killed; stderr:\n%s", p.action, p.args, p.where, ProbeTimeout, p.stderr.Bytes())
	}
	p.res = &ProbeResult{}
	if err != nil {
		p.t.Fatalf("probe %s %q (%s): %v; stderr:\n%s", p.action, p.args, p.where, err, p.stderr.Bytes())
	}
	res, err := parseProbe(p.stdout.Bytes())
	if err != nil {
		p.t.Fatalf("probe %s %q (%s): %v; stdout:\n%s\nstderr:\n%s", p.action, p.args, p.where, err, p.stdout.Bytes(), p.stderr.Bytes())
	}
	*p.res = res
	return res
}
