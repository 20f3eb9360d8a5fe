// Package escape_test runs the attacks of issue #9 from inside `assay run`
// (the real binary, real cgroups, the command as the default user: nobody
// when the tests run as root without sudo) and asserts that each fails.
// Only loopback addresses are targets. CI=true turns a missing privilege
// into a failure.
//
// The test binary doubles as the attacker: with ESCAPE_HELPER=MODE it runs
// that attack and prints one "RESULT ..." line per attempt.
package escape_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("ESCAPE_HELPER"); mode != "" {
		os.Exit(attack(mode, os.Args[1:]))
	}
	assaytest.Main(m)
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "error"
}

// ---- the attacker ----

func attack(mode string, args []string) int {
	switch mode {
	case "cgroup-procs": // move itself to the cgroup2 root
		mount := ""
		data, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(data), "\n") {
			if pre, post, ok := strings.Cut(l, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
				if f := strings.Fields(pre); len(f) > 4 {
					mount = f[4]
				}
			}
		}
		err := os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte("0\n"), 0)
		fmt.Printf("RESULT write %s/cgroup.procs %s\n", mount, errName(err))
		cg, _ := os.ReadFile("/proc/self/cgroup")
		for _, l := range strings.Split(string(cg), "\n") {
			if v, ok := strings.CutPrefix(l, "0::"); ok {
				fmt.Printf("CGROUP %s\n", v)
			}
		}
	case "kill": // kill -9 every pid listed in the file args[0] (waits for it)
		var data []byte
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if b, err := os.ReadFile(args[0]); err == nil && bytes.HasSuffix(b, []byte("\n")) {
				data = b
				break
			}
		}
		for _, f := range strings.Fields(string(data)) {
			pid, _ := strconv.Atoi(f)
			fmt.Printf("RESULT kill %d %s\n", pid, errName(unix.Kill(pid, unix.SIGKILL)))
			fd, err := unix.PidfdOpen(pid, 0)
			fmt.Printf("RESULT pidfd_open %d %s\n", pid, errName(err))
			if err == nil {
				fmt.Printf("RESULT pidfd_send_signal %d %s\n", pid, errName(unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)))
			}
		}
	case "core-pattern": // set a core_pattern helper
		f, err := os.OpenFile("/proc/sys/kernel/core_pattern", os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString("|/bin/cp /etc/shadow /tmp/stolen")
			f.Close()
		}
		fmt.Printf("RESULT core_pattern %s\n", errName(err))
	case "source-route": // raw sockets and LSRR to args[0] (a loopback address)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		fmt.Printf("RESULT raw %s\n", errName(err))
		if err == nil {
			unix.Close(fd)
		}
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			fmt.Printf("RESULT udp %s\n", errName(err))
			return 1
		}
		hop := net.ParseIP(args[0]).To4()
		opt := append([]byte{1, 0x83, 7, 4}, hop...) // NOP, LSRR len 7 ptr 4, one hop
		err = unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, string(opt))
		fmt.Printf("RESULT ip_options %s\n", errName(err))
	case "read-fd": // read descriptor args[0]
		n, _ := strconv.Atoi(args[0])
		buf := make([]byte, 64)
		k, err := unix.Read(n, buf)
		if err == nil {
			fmt.Printf("READ %q\n", buf[:k])
		}
		fmt.Printf("RESULT read %d %s\n", n, errName(err))
	case "connect-fd": // connect descriptor args[0] to args[1] (IPv4 loopback)
		n, _ := strconv.Atoi(args[0])
		ap, _ := net.ResolveTCPAddr("tcp4", args[1])
		sa := &unix.SockaddrInet4{Port: ap.Port}
		copy(sa.Addr[:], ap.IP.To4())
		fmt.Printf("RESULT connect %d %s\n", n, errName(unix.Connect(n, sa)))
	case "pidfd-getfd": // take descriptor args[1] of pid args[0]
		pid, _ := strconv.Atoi(args[0])
		n, _ := strconv.Atoi(args[1])
		pfd, err := unix.PidfdOpen(pid, 0)
		fmt.Printf("RESULT pidfd_open %s\n", errName(err))
		if err != nil {
			pfd = 0 // still try the call itself: the filter must refuse it
		}
		_, err = unix.PidfdGetfd(pfd, n, 0)
		fmt.Printf("RESULT pidfd_getfd %s\n", errName(err))
		// The process of the sandbox itself (pid 1 of its namespace is
		// init, run by assay): pidfd_getfd must be refused whatever the
		// target.
		if self, err := unix.PidfdOpen(os.Getpid(), 0); err == nil {
			_, err = unix.PidfdGetfd(self, 1, 0)
			fmt.Printf("RESULT pidfd_getfd self %s\n", errName(err))
		}
	case "tiocsti": // type into the terminal on fd 0
		c := byte('#')
		_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		fmt.Printf("RESULT tiocsti %s\n", errName(errnoErr(e)))
		_, _, e = unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI|1<<32, uintptr(unsafe.Pointer(&c)))
		fmt.Printf("RESULT tiocsti-high %s\n", errName(errnoErr(e)))
	case "abstract": // connect to the abstract Unix socket @args[0]
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + args[0]})
		}
		fmt.Printf("RESULT abstract %s\n", errName(err))
	case "hold": // outside: print "ready", then sleep
		fmt.Println("ready")
		time.Sleep(time.Minute)
	default:
		fmt.Fprintln(os.Stderr, "unknown attack", mode)
		return 2
	}
	return 0
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// ---- running attacks ----

type env struct {
	t      *testing.T
	parent cgroup.Scope
	dir    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	assaytest.Privileged(t)
	dir := t.TempDir()
	assaytest.PublicDir(t, dir)
	return &env{t: t, parent: assaytest.NewCgroup(t), dir: dir}
}

func (e *env) policy(text string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("policy-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

const netPolicy = "version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 1}]\n"

// withoutInvoker: the default user must not depend on how the tests were
// started (sudo).
func withoutInvoker(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SUDO_") && !strings.HasPrefix(kv, "PKEXEC_") && !strings.HasPrefix(kv, "ESCAPE_HELPER=") {
			out = append(out, kv)
		}
	}
	return out
}

// command is `assay run --cgroup-parent P --policy POL -- ATTACKER ARGS...`
// with the attack mode in the environment.
func (e *env) command(pol, mode string, args ...string) *exec.Cmd {
	full := append([]string{"run", "--cgroup-parent", e.parent.Path, "--policy", pol, "--", assaytest.PublicExecutable(e.t)}, args...)
	cmd := exec.Command(assaytest.Binary(e.t), full...)
	cmd.Env = append(withoutInvoker(os.Environ()), "ESCAPE_HELPER="+mode)
	return cmd
}

// results runs cmd to its end (bounded) and returns the RESULT lines as
// "what" -> errno name, and the whole stdout and stderr.
func (e *env) results(cmd *exec.Cmd) (map[string]string, string, string) {
	return e.resultsStarted(cmd, nil)
}

func (e *env) resultsStarted(cmd *exec.Cmd, started func()) (map[string]string, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	if started != nil {
		started()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		e.t.Fatalf("assay did not finish in 60s\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	res := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if r, ok := strings.CutPrefix(l, "RESULT "); ok {
			i := strings.LastIndexByte(r, ' ')
			res[r[:i]] = r[i+1:]
		}
	}
	if !strings.Contains(errb.String(), "assay: contained: runs as user nobody (65534)") {
		e.t.Errorf("the attacker did not run as the default user nobody:\n%s", errb.String())
	}
	return res, out.String(), errb.String()
}

// mustFail checks that every listed attempt was made and failed.
func mustFail(t *testing.T, res map[string]string, out string, what ...string) {
	t.Helper()
	for _, w := range what {
		r, ok := res[w]
		switch {
		case !ok:
			t.Errorf("%s: not attempted\n%s", w, out)
		case r == "ok":
			t.Errorf("%s: SUCCEEDED from inside the sandbox", w)
		default:
			t.Logf("%s: %s", w, r)
		}
	}
}

func TestEscapeCgroupProcs(t *testing.T) {
	e := newEnv(t)
	mount, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	res, out, _ := e.results(e.command(e.policy(netPolicy), "cgroup-procs"))
	mustFail(t, res, out, "write "+mount+"/cgroup.procs")
	if !strings.Contains(out, "CGROUP "+strings.TrimPrefix(e.parent.Path, mount)+"/assay-") {
		t.Errorf("the attacker left its cgroup:\n%s", out)
	}
}

func TestEscapeKill(t *testing.T) {
	e := newEnv(t)
	// A process outside the sandbox running as the same user (nobody).
	victim := exec.Command("sleep", "60")
	victim.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { victim.Process.Kill(); victim.Wait() }()
	pids := filepath.Join(e.dir, "pids")
	cmd := e.command(e.policy(netPolicy), "kill", pids)
	res, out, stderr := e.resultsStarted(cmd, func() {
		if err := os.WriteFile(pids, []byte(fmt.Sprintf("%d %d\n", cmd.Process.Pid, victim.Process.Pid)), 0o644); err != nil {
			t.Error(err)
		}
	})
	assayPID := cmd.Process.Pid
	mustFail(t, res, out, fmt.Sprintf("kill %d", assayPID), fmt.Sprintf("kill %d", victim.Process.Pid),
		fmt.Sprintf("pidfd_open %d", victim.Process.Pid))
	if cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("assay: %v\n%s", cmd.ProcessState, stderr)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the outside process died: %v", err)
	}
}

func TestEscapeCorePattern(t *testing.T) {
	e := newEnv(t)
	before, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	res, out, _ := e.results(e.command(e.policy(netPolicy), "core-pattern"))
	mustFail(t, res, out, "core_pattern")
	if after, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(before, after) {
		os.WriteFile("/proc/sys/kernel/core_pattern", before, 0)
		t.Errorf("core_pattern changed to %q", after)
	}
}

func TestEscapeSourceRouting(t *testing.T) {
	e := newEnv(t)
	res, out, _ := e.results(e.command(e.policy(netPolicy), "source-route", "127.0.0.2"))
	mustFail(t, res, out, "raw", "ip_options")
}

// TestEscapeInheritedFile: `exec 7</secret; assay run -- sh -c 'cat <&7'`.
func TestEscapeInheritedFile(t *testing.T) {
	e := newEnv(t)
	secret := filepath.Join(e.dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := e.command(e.policy(netPolicy), "read-fd", "7")
	cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, f} // fd 7
	res, out, _ := e.results(cmd)
	mustFail(t, res, out, "read 7")
	if strings.Contains(out, "s3cret") {
		t.Errorf("the inherited descriptor was read: %s", out)
	}
	// The shell version of the attack.
	cmd = exec.Command(assaytest.Binary(t), "run", "--cgroup-parent", e.parent.Path, "--policy", e.policy(netPolicy), "--", "sh", "-c", "cat <&7")
	cmd.Env = withoutInvoker(os.Environ())
	cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, f}
	sout, _ := cmd.Output()
	if strings.Contains(string(sout), "s3cret") {
		t.Errorf("sh -c 'cat <&7' printed the secret")
	}
}

// listener accepts on a loopback port and counts connections.
func listener(t *testing.T) (net.Listener, int, chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan struct{}, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			got <- struct{}{}
		}
	}()
	return l, l.Addr().(*net.TCPAddr).Port, got
}

// TestEscapeInheritedSocket: a socket created outside the sandbox (judged
// by the cgroup that created it) must not reach the command.
func TestEscapeInheritedSocket(t *testing.T) {
	e := newEnv(t)
	l, port, got := listener(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fd), "socket")
	defer sock.Close()
	pol := e.policy(fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 1}]\n", port))
	cmd := e.command(pol, "connect-fd", "7", l.Addr().String())
	cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, sock}
	res, out, _ := e.results(cmd)
	mustFail(t, res, out, "connect 7")
	select {
	case <-got:
		t.Errorf("the denied port accepted a connection")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestEscapePidfdGetfd: a process outside the sandbox, same user, holds a
// socket; the command must not take it.
func TestEscapePidfdGetfd(t *testing.T) {
	e := newEnv(t)
	holder := exec.Command(assaytest.PublicExecutable(t))
	holder.Env = append(withoutInvoker(os.Environ()), "ESCAPE_HELPER=hold")
	holder.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fd), "socket")
	defer sock.Close()
	holder.ExtraFiles = []*os.File{sock} // fd 3 of the holder
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	if l, _ := bufio.NewReader(stdout).ReadString('\n'); l != "ready\n" {
		t.Fatalf("holder: %q", l)
	}
	res, out, _ := e.results(e.command(e.policy(netPolicy), "pidfd-getfd", strconv.Itoa(holder.Process.Pid), "3"))
	mustFail(t, res, out, "pidfd_open", "pidfd_getfd", "pidfd_getfd self")
}

// TestEscapeTIOCSTI: with assay's terminal as the command's, TIOCSTI
// (also with the upper half of the command word set) is refused.
func TestEscapeTIOCSTI(t *testing.T) {
	e := newEnv(t)
	master, slave := openPTY(t)
	cmd := e.command(e.policy(netPolicy), "tiocsti")
	cmd.Stdin, cmd.Stderr = slave, nil
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	go io.Copy(io.Discard, master)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("assay did not finish")
	}
	res := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if r, ok := strings.CutPrefix(l, "RESULT "); ok {
			i := strings.LastIndexByte(r, ' ')
			res[r[:i]] = r[i+1:]
		}
	}
	mustFail(t, res, out.String(), "tiocsti", "tiocsti-high")
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// The command's user must be able to use its terminal.
	os.Chown(s.Name(), 65534, -1)
	return m, s
}

// TestInteractiveBash: `assay run -- bash` in a terminal still works.
func TestInteractiveBash(t *testing.T) {
	e := newEnv(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	master, slave := openPTY(t)
	cmd := exec.Command(assaytest.Binary(t), "run", "--cgroup-parent", e.parent.Path, "--policy", e.policy(netPolicy), "--", bash, "--norc", "-i")
	cmd.Env = append(withoutInvoker(os.Environ()), "PS1=$ ")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var seen bytes.Buffer
	lines := make(chan struct{}, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				seen.Write(buf[:n])
				lines <- struct{}{}
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	waitFor := func(s string) bool {
		deadline := time.After(30 * time.Second)
		for !strings.Contains(seen.String(), s) {
			select {
			case _, ok := <-lines:
				if !ok {
					return strings.Contains(seen.String(), s)
				}
			case <-deadline:
				return false
			}
		}
		return true
	}
	master.WriteString("echo $((6*7))-$(id -u)\n")
	if !waitFor("42-65534") {
		t.Errorf("bash did not answer in the terminal:\n%s", seen.String())
	}
	master.WriteString("exit 3\n")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if cmd.ProcessState.ExitCode() != 3 {
			t.Errorf("assay exit %d, want 3:\n%s", cmd.ProcessState.ExitCode(), seen.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Errorf("bash did not exit:\n%s", seen.String())
	}
}

// TestEscapeAbstractSocket: an abstract Unix socket created outside the
// sandbox (a D-Bus or container engine style endpoint) is out of reach
// (Landlock scope, ABI 6), also under a network-only policy.
func TestEscapeAbstractSocket(t *testing.T) {
	e := newEnv(t)
	name := fmt.Sprintf("assay-escape-test-%d", os.Getpid())
	l, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan struct{}, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			got <- struct{}{}
		}
	}()
	res, out, stderr := e.results(e.command(e.policy(netPolicy), "abstract", name))
	if !strings.Contains(stderr, "assay: contained: landlock scope: no abstract Unix socket and no signal outside the sandbox") {
		t.Fatalf("no Landlock scope on this kernel (ABI 6 needed):\n%s", stderr)
	}
	mustFail(t, res, out, "abstract")
	select {
	case <-got:
		t.Errorf("the outside abstract socket accepted a connection from the sandbox")
	case <-time.After(100 * time.Millisecond):
	}
	// The same socket is reachable from outside the sandbox: the test is
	// not failing for another reason.
	c, err := net.Dial("unix", "@"+name)
	if err != nil {
		t.Fatalf("from outside: %v", err)
	}
	c.Close()
}
