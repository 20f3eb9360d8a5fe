package learn_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
)

// prog is the observed program: it reads two files of a project, writes a
// third, lists a directory, connects to a loopback listener and prints
// what it got; with "extra" it also reads a file and connects to a port
// the learned run never used.
const prog = `import os, socket, sys
root = sys.argv[1]
others = os.path.join(os.path.dirname(root), "others")
out = []
for f in ["a.txt", "b.txt"]:
    with open(os.path.join(root, "project", f)) as fh:
        out.append(fh.read().strip())
with open(os.path.join(root, "project", "out", "result.txt"), "w") as fh:
    fh.write("written")
out.append(",".join(sorted(os.listdir(os.path.join(root, "project", "docs")))))
if len(sys.argv) > 3 and sys.argv[3] == "secret":
    with open(os.path.join(others, "home", ".ssh", "id_ed25519")) as fh:
        out.append("key:" + fh.read().strip())
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10)
out.append(s.recv(16).decode())
s.close()
if len(sys.argv) > 3 and sys.argv[3] == "extra":
    try:
        with open(os.path.join(others, "outside", "other.txt")) as fh:
            out.append("read other")
    except OSError as e:
        out.append("other: " + e.strerror)
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=10).close()
        out.append("connected to the other port")
    except OSError as e:
        out.append("other port: " + e.strerror)
print(" ".join(out))
`

type fixture struct {
	t               *testing.T
	dir, prog       string
	others, out     string // untouched files; policies
	port, otherPort int
	python          string
}

// listen serves "hi" on a loopback port until the test ends.
func listen(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func newFixture(t *testing.T) *fixture {
	assaytest.Privileged(t)
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3")
	}
	// DIR/work holds the program and its project (python lists the
	// script's directory: all of it is learned); DIR/others what the
	// learned runs never touch, and a key.
	top := t.TempDir()
	dir := filepath.Join(top, "work")
	f := &fixture{t: t, dir: dir, python: py, port: listen(t), otherPort: listen(t)}
	files := map[string]string{
		"work/project/a.txt": "alpha", "work/project/b.txt": "beta", "work/project/docs/x.md": "x", "work/project/docs/y.md": "y",
		"others/outside/other.txt": "other", "others/home/.ssh/id_ed25519": "KEY", "work/prog.py": prog,
	}
	for p, c := range files {
		full := filepath.Join(top, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "project", "out"), 0o777); err != nil {
		t.Fatal(err)
	}
	// The command runs as nobody: every directory on the way is
	// traversable, project/out writable.
	// (Below the temporary directory only: chmod 0755 of /tmp itself took
	// its sticky bit and world write from the whole machine.)
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.others = filepath.Join(top, "others")
	f.out = filepath.Join(top, "out")
	if err := os.Mkdir(f.out, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "project", "out"), 0o777)
	f.prog = filepath.Join(dir, "prog.py")
	return f
}

func (f *fixture) argv(mode ...string) []string {
	a := []string{f.python, f.prog, f.dir, strconv.Itoa(f.port)}
	a = append(a, mode...)
	if len(mode) > 0 && mode[0] == "extra" {
		a = append(a, strconv.Itoa(f.otherPort))
	}
	return a
}

type result struct {
	status         int
	stdout, stderr string
}

func assay(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(assaytest.Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(assaytest.Scaled(2 * time.Minute)):
		cmd.Process.Kill()
		<-done
		t.Fatalf("assay %q timed out; stderr:\n%s", args, errb.String())
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

func (f *fixture) learn(out string, extra ...string) result {
	f.t.Helper()
	args := append([]string{"learn", "--out", out}, extra...)
	r := assay(f.t, append(append(args, "--"), f.argv()...)...)
	if r.status != 0 {
		f.t.Fatalf("assay learn: status %d\n%s", r.status, r.stderr)
	}
	return r
}

// TestLearnThenRun: a python program observed by assay learn; the policy
// checks; the same program under assay run with it works and prints the
// same; an access it did not make (a file outside what it used, another
// port) is refused with events. Two learned runs are byte-identical.
func TestLearnThenRun(t *testing.T) {
	f := newFixture(t)
	pol := filepath.Join(f.out, "learned.yaml")
	lr := f.learn(pol)
	want := "alpha beta x.md,y.md hi"
	if strings.TrimSpace(lr.stdout) != want {
		t.Fatalf("the observed run printed %q, want %q\n%s", lr.stdout, want, lr.stderr)
	}
	text, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learned policy:\n%s", text)
	for _, c := range []string{
		fmt.Sprintf("- {path: %s/, access: rw}", f.dir),
		fmt.Sprintf("- {cidr: 127.0.0.1/32, ports: [%d], proto: tcp}", f.port),
		"default: deny", "baseline: runtime", "# seen: ",
	} {
		if !strings.Contains(string(text), c) {
			t.Errorf("the learned policy lacks %q", c)
		}
	}
	if strings.Contains(string(text), "outside") || strings.Contains(string(text), ".ssh") || strings.Contains(string(text), strconv.Itoa(f.otherPort)) {
		t.Errorf("the learned policy names what the run did not use")
	}
	if r := assay(t, "policy", "check", pol); r.status != 0 {
		t.Fatalf("assay policy check: status %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	// Again under the learned policy: it works, the same output.
	rr := assay(t, append([]string{"run", "--policy", pol, "--"}, f.argv()...)...)
	if rr.status != 0 || strings.TrimSpace(rr.stdout) != want || strings.Contains(rr.stderr, "BLOCKED FILE:") || strings.Contains(rr.stderr, "BLOCKED CONNECT:") {
		t.Fatalf("under the learned policy: status %d, stdout %q\n%s", rr.status, rr.stdout, rr.stderr)
	}
	// What it did not do before is refused, with events.
	xr := assay(t, append([]string{"run", "--policy", pol, "--"}, f.argv("extra")...)...)
	other := filepath.Join(f.others, "outside", "other.txt")
	if !strings.Contains(xr.stdout, "other: Permission denied") || !strings.Contains(xr.stdout, "other port: Operation not permitted") {
		t.Errorf("extra accesses under the learned policy: stdout %q", xr.stdout)
	}
	if !strings.Contains(xr.stderr, "BLOCKED FILE:") || !strings.Contains(xr.stderr, "path="+other) ||
		!strings.Contains(xr.stderr, fmt.Sprintf("BLOCKED CONNECT: dst=127.0.0.1:%d", f.otherPort)) {
		t.Errorf("no BLOCKED FILE event for %s or BLOCKED CONNECT for port %d:\n%s", other, f.otherPort, xr.stderr)
	}
	// Determinism: a second learned run writes the same bytes.
	pol2 := filepath.Join(f.out, "learned2.yaml")
	f.learn(pol2)
	text2, err := os.ReadFile(pol2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(text, text2) {
		t.Errorf("two learned runs differ:\n%s\n---\n%s", text, text2)
	}
}

// TestLearnSensitive: a key read under ~/.ssh is written commented out
// with a warning and listed on stderr; under the policy the read is
// refused.
func TestLearnSensitive(t *testing.T) {
	f := newFixture(t)
	pol := filepath.Join(f.out, "learned.yaml")
	cmd := append([]string{"learn", "--out", pol, "--"}, f.argv("secret")...)
	lr := assay(t, cmd...)
	if lr.status != 0 || !strings.Contains(lr.stdout, "key:KEY") {
		t.Fatalf("assay learn: status %d stdout %q\n%s", lr.status, lr.stdout, lr.stderr)
	}
	key := filepath.Join(f.others, "home", ".ssh", "id_ed25519")
	text, _ := os.ReadFile(pol)
	if !strings.Contains(string(text), "# WARNING sensitive: SSH keys") || !strings.Contains(string(text), "# - {path: "+key+", access: r}") {
		t.Errorf("the key is not a commented-out rule with a warning:\n%s", text)
	}
	if !strings.Contains(lr.stderr, "sensitive paths or addresses were touched") || !strings.Contains(lr.stderr, key+" (SSH keys)") {
		t.Errorf("stderr does not list the key:\n%s", lr.stderr)
	}
	rr := assay(t, append([]string{"run", "--policy", pol, "--"}, f.argv("secret")...)...)
	if rr.status == 0 || !strings.Contains(rr.stderr, "BLOCKED FILE:") || !strings.Contains(rr.stderr, "path="+key) {
		t.Errorf("reading the key under the learned policy: status %d\n%s", rr.status, rr.stderr)
	}
}

// TestLearnBaseAndDiff: assay learn --policy BASE adds only what BASE does
// not allow (here: the extra file and port, learned from the extra run),
// keeps BASE's text; assay policy diff BASE NEW lists exactly that and
// exits 1, and 0 for a policy against itself.
func TestLearnBaseAndDiff(t *testing.T) {
	f := newFixture(t)
	base := filepath.Join(f.out, "base.yaml")
	f.learn(base)
	baseText, _ := os.ReadFile(base)
	next := filepath.Join(f.out, "next.yaml")
	cmd := append([]string{"learn", "--policy", base, "--out", next, "--"}, f.argv("extra")...)
	if r := assay(t, cmd...); r.status != 0 {
		t.Fatalf("assay learn --policy: status %d\n%s", r.status, r.stderr)
	}
	nextText, _ := os.ReadFile(next)
	t.Logf("merged:\n%s", nextText)
	if strings.Count(string(nextText), "# learned: ") != 2 {
		t.Errorf("want two learned entries (the file, the port)")
	}
	for _, l := range strings.Split(string(baseText), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "- {") && !strings.Contains(string(nextText), strings.TrimSpace(l)) {
			t.Errorf("BASE's rule %q is not in the result", l)
		}
	}
	d := assay(t, "policy", "diff", base, next)
	other := filepath.Join(f.others, "outside", "other.txt")
	if d.status != 1 || !strings.Contains(d.stdout, "+ files "+other+": r (+r)") ||
		!strings.Contains(d.stdout, fmt.Sprintf("+ network 127.0.0.1 port %d tcp", f.otherPort)) || strings.Count(d.stdout, "\n") != 2 {
		t.Errorf("policy diff: status %d\n%s%s", d.status, d.stdout, d.stderr)
	}
	if d := assay(t, "policy", "diff", next, base); d.status != 0 || d.stdout != "" {
		t.Errorf("policy diff NEW BASE: status %d\n%s%s", d.status, d.stdout, d.stderr)
	}
}
