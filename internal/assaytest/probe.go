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

	"github.com/assaymcp/assay/internal/cgroup"
	"golang.org/x/sys/unix"
)

// probeEnv names the action a re-executed test binary performs.
const probeEnv = "ASSAY_PROBE"

// ProbeTimeout bounds one probe process.
const ProbeTimeout = 30 * time.Second

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
		if fd < 0 {
			if fd, err = socket(family, typ); err != nil {
				return fmt.Errorf("socket: %w", err)
			}
		}
		r.Attempts++
		// A connect refused by a cgroup program leaves the socket
		// unconnected, so it can be reused for the next attempt.
		err := unix.Connect(fd, sa)
		if err == unix.EPERM {
			r.N++
			continue
		}
		r.Other++
		r.setErr(err)
		unix.Close(fd)
		fd = -1
	}
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
		return errors.New("usage: exec ARGV...")
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
		return errors.New("usage: spawn-grandchild ACTION ARGS...")
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
