// Package run_test tests `assay run` and `assay doctor` end to end: the
// real binary, real cgroups, real BPF programs and Landlock, real
// processes. They need root (CI=true turns a missing root into a failure).
//
// The test binary doubles as the command under test: with ASSAY_RUN_HELPER=1
// in its environment it runs one of the helper modes below instead of the
// tests.
package run_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

var (
	// helperBin is a copy of this test binary that the command's
	// unprivileged user can execute (go test's own directory is 0700).
	helperBin string
)

func TestMain(m *testing.M) {
	if os.Getenv("ASSAY_RUN_HELPER") == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// A signal this process inherited as ignored (nohup, a CI runner, a
	// background job without job control) would be inherited by assay,
	// which by design neither catches nor forwards it: the forwarding tests
	// then wait in vain (the TestRunForwardsSignals/SIGHUP "flake"). A
	// handler here, never read, keeps ignoring them in this process while
	// exec gives assay the default disposition.
	for _, s := range []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		if signal.Ignored(s) {
			signal.Notify(make(chan os.Signal, 1), s)
		}
	}
	dir, err := os.MkdirTemp("", "assay-run-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	helperBin = filepath.Join(dir, "helper")
	if err := copyFile(os.Args[0], helperBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The assay binary is assaytest's, built once ($ASSAY_BIN when set).
	return assaytest.RunMain(m)
}

// publicDir makes a t.TempDir() (and the per-test directory above it)
// searchable and readable by the command's unprivileged user.
func publicDir(t *testing.T, dir string) {
	t.Helper()
	assaytest.PublicDir(t, dir)
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// ---- the helper (the command run under assay) ----

// blob is what the "blob" mode writes: every byte value, then pseudo-random
// bytes, with no trailing newline.
func blob() []byte {
	b := make([]byte, 0, 70000)
	for i := 0; i < 256; i++ {
		b = append(b, byte(i))
	}
	x := uint32(2463534242)
	for len(b) < cap(b)-1 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b = append(b, byte(x))
	}
	return append(b, 0)
}

func helper(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		return 2
	}
	mode, args := args[0], args[1:]
	switch mode {
	case "blob": // write blob() to stdout
		os.Stdout.Write(blob())
		return 0
	case "echo": // copy stdin to stdout; report where fd 1 points on stderr
		fd1, _ := os.Readlink("/proc/self/fd/1")
		fmt.Fprintf(os.Stderr, "helper fd1=%s\n", fd1)
		io.Copy(os.Stdout, os.Stdin)
		return 0
	case "forge": // print LINE to stderr and the environment to stdout, then connect to each ADDR
		fmt.Fprintln(os.Stderr, args[0])
		for _, kv := range os.Environ() {
			fmt.Println("env", kv)
		}
		return helper(append([]string{"connect"}, args[1:]...))
	case "connect": // connect to each ADDR, print "connect ADDR RESULT"
		for _, a := range args {
			c, err := net.DialTimeout("tcp", a, 3*time.Second)
			if err == nil {
				c.Close()
			}
			fmt.Printf("connect %s %s\n", a, errName(err))
		}
		return 0
	case "spawn": // run this helper again as a child (a grandchild of assay)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Println("spawn:", err)
			return 1
		}
		return 0
	case "signals": // report the first forwarded signal, then exit 7
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		printCgroup()
		fmt.Println("ready")
		s := <-c
		fmt.Printf("got %s\n", unix.SignalName(s.(syscall.Signal)))
		return 7
	case "signals-all": // report each forwarded signal; exit 7 after SIGTERM
		c := make(chan os.Signal, 8)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
		printCgroup()
		fmt.Println("ready")
		for s := range c {
			fmt.Printf("got %s\n", unix.SignalName(s.(syscall.Signal)))
			if s == syscall.SIGTERM {
				return 7
			}
		}
		return 1
	case "daemon": // leave a grandchild behind, then wait to be killed
		gc := exec.Command("sleep", "300")
		if err := gc.Start(); err != nil {
			fmt.Println("daemon:", err)
			return 1
		}
		printCgroup()
		fmt.Printf("pid %d\ngrandchild %d\nready\n", os.Getpid(), gc.Process.Pid)
		time.Sleep(time.Hour)
		return 0
	case "nolandlock": // exec ARGS... with the Landlock syscalls failing ENOSYS
		runtime.LockOSThread()
		if err := assaytest.DenyLandlock(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		err := syscall.Exec(args[0], args, os.Environ())
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	case "connect-spin": // connect to ADDR in a loop from a grandchild, forever
		if len(args) > 0 && args[0] == "child" {
			addr := args[1]
			for i := 0; ; i++ {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
					fmt.Println("connected")
				}
				if i == 0 {
					fmt.Println("ready")
				}
			}
		}
		cmd := exec.Command(os.Args[0], "connect-spin", "child", args[0])
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Run()
		return 0
	case "status": // identity, capabilities, no_new_privs, seccomp, descriptors, HOME/USER
		data, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "SigIgn", "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp":
				fmt.Printf("%s %s\n", k, strings.Join(strings.Fields(v), " "))
			}
		}
		ents, _ := os.ReadDir("/proc/self/fd")
		var fds []string
		for _, e := range ents {
			// 0-2, and files (not the Go runtime's epoll, pipes and
			// cgroup CPU limit files).
			t, err := os.Readlink("/proc/self/fd/" + e.Name())
			if err == nil && (e.Name() <= "2" && len(e.Name()) == 1 || strings.HasPrefix(t, "/") && !strings.HasPrefix(t, "/proc/") && !strings.HasPrefix(t, "/sys/fs/cgroup/")) {
				fds = append(fds, e.Name())
			}
		}
		fmt.Printf("fds %s\n", strings.Join(fds, " "))
		fmt.Printf("HOME %s\nUSER %s\n", os.Getenv("HOME"), os.Getenv("USER"))
		return 0
	case "files": // OP:PATH ... with OP read, list, exec
		for _, a := range args {
			op, p, _ := strings.Cut(a, ":")
			var err error
			switch op {
			case "read":
				_, err = os.ReadFile(p)
			case "list":
				_, err = os.ReadDir(p)
			case "exec":
				err = exec.Command(p).Run()
			}
			fmt.Printf("%s %s\n", a, errName(err))
		}
		return 0
	}
	if st, ok := helperV2(mode, args); ok {
		return st
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
	return 2
}

func printCgroup() {
	data, _ := os.ReadFile("/proc/self/cgroup")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "0::") {
			fmt.Println("cgroup " + strings.TrimPrefix(l, "0::"))
		}
	}
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "error:" + strings.ReplaceAll(err.Error(), " ", "_")
}

// ---- running assay ----

// env is one test's private cgroup parent and policy directory.
type env struct {
	t      *testing.T
	parent cgroup.Scope
	dir    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.Privileged(t)
	p, err := cgroup.CreateLeaf("", "assaytest-run")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cgroup.Remove(p); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	dir := t.TempDir()
	publicDir(t, dir)
	return &env{t: t, parent: p, dir: dir}
}

// policy writes a policy file and returns its path.
func (e *env) policy(text string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("policy-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// command returns `assay run --cgroup-parent PARENT ARGS...`, where args
// hold the assay flags, then "--" and the command. helperArgs, if the
// command is "@", is replaced by the helper.
func (e *env) command(args ...string) *exec.Cmd {
	full := []string{"run", "--cgroup-parent", e.parent.Path}
	for _, a := range args {
		if a == "@" {
			full = append(full, helperBin)
			continue
		}
		full = append(full, a)
	}
	cmd := exec.Command(assaytest.Binary(e.t), full...)
	cmd.Env = append(os.Environ(), "ASSAY_RUN_HELPER=1")
	return cmd
}

type result struct {
	stdout string
	// stderr without the token on assay's lines (see unmarked); raw as
	// written.
	stderr, raw string
	status      int
}

// unmarked removes the token assay starts each of its lines with.
func unmarked(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i], _ = assaytest.Unmark(l)
	}
	return strings.Join(lines, "\n")
}

func (e *env) run(stdin io.Reader, args ...string) result {
	e.t.Helper()
	cmd := e.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		e.t.Fatalf("assay %q did not finish in 30s\nstdout:\n%s\nstderr:\n%s", args, out.String(), errb.String())
	}
	return result{stdout: out.String(), stderr: unmarked(errb.String()), raw: errb.String(), status: status(cmd.ProcessState)}
}

func status(ps *os.ProcessState) int {
	if ws := ps.Sys().(syscall.WaitStatus); ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// started is an assay run whose helper said "ready".
type started struct {
	cmd    *exec.Cmd
	lines  map[string]string // "cgroup", "pid", "grandchild" -> value
	stdout *bufio.Reader
	stderr *bytes.Buffer
	done   chan error
}

// start runs assay until the helper prints "ready".
func (e *env) start(args ...string) *started {
	e.t.Helper()
	cmd := e.command(args...)
	r, w, err := os.Pipe()
	if err != nil {
		e.t.Fatal(err)
	}
	s := &started{cmd: cmd, lines: map[string]string{}, stdout: bufio.NewReader(r), stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = w, s.stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	w.Close()
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		r.Close()
	})
	go func() { s.done <- cmd.Wait() }()
	got := make(chan error, 1)
	go func() {
		for {
			l, err := s.stdout.ReadString('\n')
			if err != nil {
				got <- err
				return
			}
			l = strings.TrimSpace(l)
			if l == "ready" {
				got <- nil
				return
			}
			k, v, _ := strings.Cut(l, " ")
			s.lines[k] = v
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			e.t.Fatalf("helper did not get ready: %v\nstderr:\n%s", err, s.stderr.String())
		}
	case <-time.After(20 * time.Second):
		e.t.Fatalf("helper not ready after 20s\nstderr:\n%s", s.stderr.String())
	}
	return s
}

// wait waits for assay to exit and returns its status and the rest of
// stdout.
func (s *started) wait(t *testing.T) (int, string) {
	t.Helper()
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(s.stdout)
		rest <- string(b)
	}()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("assay did not exit\nstderr:\n%s", s.stderr.String())
	}
	return status(s.cmd.ProcessState), <-rest
}

// leaf returns the scope of the cgroup the helper reported, checking that it
// is a fresh assay- leaf of the test's parent.
func (e *env) leaf(rel string) cgroup.Scope {
	e.t.Helper()
	mount, err := cgroup.Mount()
	if err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(mount, rel)
	if filepath.Dir(p) != e.parent.Path || !strings.HasPrefix(filepath.Base(p), "assay-") {
		e.t.Fatalf("the command ran in cgroup %s, want an assay-* child of %s", p, e.parent.Path)
	}
	s, err := cgroup.Resolve(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// goneTimeout bounds gone and processGone: a hang guard for what must
// happen at once, sized for a busy machine (at a load average of 25,
// seconds pass between two steps of a process).
const goneTimeout = 2 * time.Minute

// gone waits up to goneTimeout for path to disappear.
func gone(path string) bool {
	for deadline := time.Now().Add(goneTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return true
		}
	}
	return false
}

// processGone waits up to goneTimeout for pid to stop existing (or be a
// zombie).
func processGone(pid int) bool {
	for deadline := time.Now().Add(goneTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := bytes.LastIndexByte(data, ')'); i > 0 && len(data) > i+2 && data[i+2] == 'Z' {
			return true
		}
	}
	return false
}
