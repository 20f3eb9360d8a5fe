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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/assaymcp/assay/internal/cgroup"
	"golang.org/x/sys/unix"
)

// probeEnv names the action a re-executed test binary performs.
const probeEnv = "ASSAY_PROBE"

// ProbeTimeout bounds one probe process: a hang guard sized for a busy
// machine like ReadyTimeout and StopTimeout (measured: `assay policy check`
// on TestHostilePolicyFiles' largest element count, 1.4 s of CPU, took 20 s
// of wall clock at a load average of 24).
const ProbeTimeout = 2 * time.Minute

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
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = probeEnviron(action)
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

// ---- the probe process side ----

func init() {
	// In a probe, keep the main goroutine on the main thread from the
	// start (LockOSThread during init does that), so that the system calls
	// under test are made by the thread whose id is the process id.
	if os.Getenv(probeEnv) != "" {
		runtime.LockOSThread()
	}
}

// runProbe performs action and prints its report. Its exit status is 0
// whenever it could attempt the action, whatever the outcome; 2 for bad
// arguments.
func runProbe(action string, args []string) int {
	// Every system call under test is made from this thread.
	runtime.LockOSThread()
	res := ProbeResult{PID: os.Getpid(), TID: unix.Gettid(), Exit: -1}
	if comm, err := os.ReadFile("/proc/self/comm"); err == nil {
		res.Comm = strings.TrimSpace(string(comm))
	}
	var err error
	switch action {
	case "connect":
		err = probeConnect(&res, args)
	case "sendto":
		err = probeSendto(&res, args)
	case "net":
		err = probeNet(&res, args)
	case "connect-loop":
		err = probeConnectLoop(&res, args)
	case "open":
		err = probeOpen(&res, args)
	case "reopen":
		err = probeReopen(&res, args)
	case "open-deep":
		err = probeOpenDeep(&res, args)
	case "link", "rename":
		err = probeLinkRename(&res, action, args)
	case "exec":
		err = probeExec(&res, args)
	case "cat":
		err = probeExec(&res, append([]string{"cat"}, args...))
	case "spawn-grandchild":
		err = probeGrandchild(&res, args)
	case "exec-rusage":
		err = probeExecRusage(&res, args)
	case "connect-until":
		err = probeConnectUntil(&res, args)
	case "open-until":
		err = probeOpenUntil(&res, args)
	case "set-comm":
		if len(args) < 2 {
			err = errors.New("usage: set-comm NAME ACTION ARGS [...]")
			break
		}
		name := append([]byte(args[0]), 0)
		if err = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
			err = fmt.Errorf("prctl(PR_SET_NAME): %w", err)
			break
		}
		return runProbe(args[1], args[2:])
	case "as-user":
		if err = probeAsUser(args); err != nil {
			break
		}
		return runProbe(args[2], args[3:])
	case "leave-cgroup":
		err = probeLeaveCgroup(&res, args)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "assaytest probe %s %q: %v\n", action, args, err)
		return 2
	}
	out, _ := json.Marshal(res)
	os.Stdout.Write(append(out, '\n'))
	return 0
}

// setErr records the outcome of the operation under test.
func (r *ProbeResult) setErr(err error) {
	if err == nil {
		return
	}
	r.Err = err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Errno = unix.ErrnoName(errno)
		if r.Errno == "" {
			r.Errno = "errno" + strconv.Itoa(int(errno))
		}
	}
}

// sockaddr turns "tcp4|tcp6|udp4|udp6" and ADDR:PORT into a socket family,
// type and destination. A *6 network always uses AF_INET6, so an
// ::ffff:a.b.c.d address is a mapped destination on an IPv6 socket.
func sockaddr(network, addr string) (family, typ int, sa unix.Sockaddr, err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, 0, nil, err
	}
	switch network {
	case "tcp4", "tcp6":
		typ = unix.SOCK_STREAM
	case "udp4", "udp6":
		typ = unix.SOCK_DGRAM
	default:
		return 0, 0, nil, fmt.Errorf("network %q: want tcp4, tcp6, udp4 or udp6", network)
	}
	if strings.HasSuffix(network, "4") {
		if !ap.Addr().Is4() {
			return 0, 0, nil, fmt.Errorf("%s is not an IPv4 address", ap.Addr())
		}
		return unix.AF_INET, typ, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
	}
	if ap.Addr().Is4() {
		return 0, 0, nil, fmt.Errorf("%s is an IPv4 address; write ::ffff:%s for a mapped destination", ap.Addr(), ap.Addr())
	}
	return unix.AF_INET6, typ, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
}

func socket(family, typ int) (int, error) {
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// A blocking connect honours SO_SNDTIMEO: never hang on a lost SYN.
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	return fd, nil
}

func localAddr(fd int) string {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return ""
}

func probeConnect(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: connect tcp4|tcp6 ADDR:PORT")
	}
	family, typ, sa, err := sockaddr(args[0], args[1])
	if err != nil {
		return err
	}
	if typ != unix.SOCK_STREAM {
		return errors.New("connect: use tcp4 or tcp6")
	}
	fd, err := socket(family, typ)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	r.setErr(unix.Connect(fd, sa))
	if r.Ok() {
		r.Out = localAddr(fd)
	}
	return nil
}

func probeSendto(r *ProbeResult, args []string) error {
	if len(args) != 2 && len(args) != 3 {
		return errors.New("usage: sendto udp4|udp6 ADDR:PORT [DATA]")
	}
	family, typ, sa, err := sockaddr(args[0], args[1])
	if err != nil {
		return err
	}
	if typ != unix.SOCK_DGRAM {
		return errors.New("sendto: use udp4 or udp6")
	}
	data := "assaytest probe " + strconv.Itoa(r.PID)
	if len(args) == 3 {
		data = args[2]
	}
	fd, err := socket(family, typ)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	r.setErr(unix.Sendto(fd, []byte(data), 0, sa))
	if r.Ok() {
		r.Out = localAddr(fd)
	}
	return nil
}

func probeConnectLoop(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: connect-loop N tcp4|tcp6 ADDR:PORT")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return fmt.Errorf("bad count %q", args[0])
	}
	family, typ, sa, err := sockaddr(args[1], args[2])
	if err != nil {
		return err
	}
	fd := -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	for i := 0; i < n; i++ {
		if err := r.connectOnce(&fd, family, typ, sa); err != nil {
			return err
		}
	}
	return nil
}

// connectOnce makes one connect attempt for the loop actions, counting it
// in r: N for EPERM, Other for anything else. A connect refused by a cgroup
// program leaves the socket unconnected, so *fd is reused for the next
// attempt; after any other outcome it is closed and a new one is made.
func (r *ProbeResult) connectOnce(fd *int, family, typ int, sa unix.Sockaddr) error {
	if *fd < 0 {
		var err error
		if *fd, err = socket(family, typ); err != nil {
			*fd = -1
			return fmt.Errorf("socket: %w", err)
		}
	}
	r.Attempts++
	err := unix.Connect(*fd, sa)
	if err == unix.EPERM {
		r.N++
		return nil
	}
	r.Other++
	r.setErr(err)
	unix.Close(*fd)
	*fd = -1
	return nil
}

func probeOpen(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: open PATH r|w")
	}
	var flags int
	switch args[1] {
	case "r":
		flags = unix.O_RDONLY
	case "w":
		flags = unix.O_WRONLY
	default:
		return fmt.Errorf("open flags %q: want r or w", args[1])
	}
	fd, err := unix.Open(args[0], flags|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	if flags == unix.O_RDONLY {
		readAll(r, fd)
	}
	return nil
}

// readAll reads up to 64 KiB of fd into r.Out.
func readAll(r *ProbeResult, fd int) {
	var data []byte
	buf := make([]byte, 4096)
	for len(data) < 64<<10 {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.setErr(err)
			break
		}
		if n == 0 {
			break
		}
		data = append(data, buf[:n]...)
	}
	r.Out = string(data)
}

func probeReopen(r *ProbeResult, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: reopen PATH")
	}
	pfd, err := unix.Open(args[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(fmt.Errorf("open O_PATH: %w", err))
		return nil
	}
	defer unix.Close(pfd)
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	readAll(r, fd)
	return nil
}

func probeOpenDeep(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: open-deep DIR N NAME")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 {
		return fmt.Errorf("bad depth %q", args[1])
	}
	dfd, err := unix.Open(args[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(fmt.Errorf("open %s O_PATH: %w", args[0], err))
		return nil
	}
	for i := 0; i < n; i++ {
		next, err := unix.Openat(dfd, "n", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(dfd)
		if err != nil {
			r.setErr(fmt.Errorf("openat level %d O_PATH: %w", i+1, err))
			return nil
		}
		dfd = next
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, args[2], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	readAll(r, fd)
	return nil
}

func probeLinkRename(r *ProbeResult, action string, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s OLD NEW", action)
	}
	if action == "link" {
		r.setErr(unix.Link(args[0], args[1]))
	} else {
		r.setErr(unix.Rename(args[0], args[1]))
	}
	return nil
}

func probeExec(r *ProbeResult, argv []string) error {
	if len(argv) == 0 {
		return errors.New("usage: exec ARGV [...]")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if err != nil {
		r.setErr(err)
		return nil
	}
	r.ChildPID = cmd.Process.Pid
	err = cmd.Wait()
	r.Out = stdout.String()
	r.Exit = cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		r.setErr(err)
	} else if r.Exit != 0 {
		r.Err = strings.TrimSpace(stderr.String())
		if r.Err == "" {
			r.Err = err.Error()
		}
	}
	return nil
}

func probeGrandchild(r *ProbeResult, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: spawn-grandchild ACTION ARGS [...]")
	}
	// The executable's real path, not /proc/self/exe: the grandchild's
	// comm comes from the name it is executed by.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args[1:]...)
	cmd.Env = probeEnviron(args[0])
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("grandchild: %w", err)
	}
	res, err := parseProbe(stdout.Bytes())
	if err != nil {
		return fmt.Errorf("grandchild: %w", err)
	}
	if res.PID != cmd.Process.Pid {
		return fmt.Errorf("grandchild reported pid %d, started as %d", res.PID, cmd.Process.Pid)
	}
	res.Via = r.PID
	*r = res
	return nil
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

// untilStop runs one attempt at a time until the file stop exists,
// creating stop+".ready" after the first attempt. It checks for the file
// every 64 attempts, so that the check costs little next to the attempts.
func untilStop(stop string, attempt func()) error {
	for i := 0; ; i++ {
		attempt()
		if i == 0 {
			if err := os.WriteFile(stop+".ready", nil, 0o644); err != nil {
				return err
			}
		}
		if i%64 == 63 {
			if _, err := os.Stat(stop); err == nil {
				return nil
			}
		}
	}
}

func probeConnectUntil(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: connect-until STOP tcp4|tcp6 ADDR:PORT")
	}
	family, typ, sa, err := sockaddr(args[1], args[2])
	if err != nil {
		return err
	}
	fd := -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	var serr error
	err = untilStop(args[0], func() {
		if serr == nil {
			serr = r.connectOnce(&fd, family, typ, sa)
		}
	})
	if serr != nil {
		return serr
	}
	return err
}

func probeOpenUntil(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: open-until STOP PATH")
	}
	return untilStop(args[0], func() {
		r.Attempts++
		fd, err := unix.Open(args[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EPERM {
			r.N++
			return
		}
		r.Other++
		if err != nil {
			r.setErr(err)
			return
		}
		unix.Close(fd)
	})
}

func probeAsUser(args []string) error {
	if len(args) < 3 {
		return errors.New("usage: as-user UID GID ACTION ARGS [...]")
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("as-user: bad uid %q or gid %q", args[0], args[1])
	}
	// The syscall package applies these to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	return nil
}

func probeLeaveCgroup(r *ProbeResult, args []string) error {
	if len(args) < 3 {
		return errors.New("usage: leave-cgroup tcp4|tcp6 ADDR:PORT PROCS [...]")
	}
	for _, procs := range args[2:] {
		step := procs + ": ok"
		f, err := os.OpenFile(procs, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(os.Getpid()))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				step = procs + ": " + unix.ErrnoName(errno)
			} else {
				step = procs + ": " + err.Error()
			}
		}
		r.Steps = append(r.Steps, step)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(cg), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			r.Steps = append(r.Steps, "cgroup: "+rest)
		}
	}
	return probeConnect(r, args[:2])
}

func probeExecRusage(r *ProbeResult, argv []string) error {
	if len(argv) == 0 {
		return errors.New("usage: exec-rusage ARGV [...]")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		r.setErr(err)
		return nil
	}
	r.ChildPID = cmd.Process.Pid
	err := cmd.Wait()
	r.Out = stdout.String()
	r.Err = stderr.String()
	r.Exit = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss << 10 // KiB on Linux
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		r.setErr(err)
	}
	return nil
}
