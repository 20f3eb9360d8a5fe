package learn_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// changes changes a work directory without opening anything in it: mkdir,
// rename into the new directory, unlink, rmdir, symlink, link, chmod,
// truncate; with "extra" it also tries to remove a file outside it.
const changes = `import os, sys
w = sys.argv[1]
os.mkdir(os.path.join(w, "new"))
os.rename(os.path.join(w, "old.txt"), os.path.join(w, "new", "moved.txt"))
os.unlink(os.path.join(w, "junk.txt"))
os.rmdir(os.path.join(w, "emptydir"))
os.symlink("moved.txt", os.path.join(w, "new", "link"))
os.link(os.path.join(w, "new", "moved.txt"), os.path.join(w, "new", "hard"))
os.chmod(os.path.join(w, "mode.txt"), 0o600)
os.truncate(os.path.join(w, "big.txt"), 1)
out = ["changed"]
if len(sys.argv) > 2:
    try:
        os.unlink(sys.argv[2])
        out.append("removed the outside file")
    except OSError as e:
        out.append("outside: " + e.strerror)
print(" ".join(out))
`

var fileOpLine = regexp.MustCompile(`\] [A-Z ]+: path=(\S+) op=(\w+)( target=true)?`)

// changeFixture is a work directory the command changes (owned by the
// user it runs as) and a script outside it.
type changeFixture struct {
	top, work, script, outside, python string
}

func newChangeFixture(t *testing.T) *changeFixture {
	assaytest.Privileged(t)
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3")
	}
	top := t.TempDir()
	f := &changeFixture{top: top, work: filepath.Join(top, "work"), script: filepath.Join(top, "bin", "changes.py"),
		outside: filepath.Join(top, "others", "keep.txt"), python: py}
	for p, c := range map[string]string{f.script: changes, f.outside: "keep"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The outside file's directory is writable: only the policy keeps
	// the command from removing it.
	os.Chmod(filepath.Dir(f.outside), 0o777)
	for d := top; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.reset(t)
	return f
}

// reset puts the work directory back as the command expects it, owned
// by nobody (who runs the command: chmod needs the owner).
func (f *changeFixture) reset(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(f.work); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{f.work, filepath.Join(f.work, "emptydir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"old.txt", "junk.txt", "mode.txt", "big.txt"} {
		if err := os.WriteFile(filepath.Join(f.work, n), []byte("content"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(f.work, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
}

// TestLearnChanges: a command that creates, renames, links, removes and
// changes files in a work directory, opening none of them, is learned
// (the changes observed: on this host's trace path, with the start
// directory named by the kernel), with w on the work directory and
// nothing outside it; it runs under the learned policy with no refusal,
// and removing a file outside the directory is refused.
func TestLearnChanges(t *testing.T) {
	f := newChangeFixture(t)
	pol := filepath.Join(f.top, "learned.yaml")
	evs := filepath.Join(f.top, "events.json")
	lr := assay(t, "learn", "--out", pol, "--events", evs, "--", f.python, f.script, f.work)
	if lr.status != 0 || strings.TrimSpace(lr.stdout) != "changed" {
		t.Fatalf("assay learn: status %d, stdout %q\n%s", lr.status, lr.stdout, lr.stderr)
	}
	text, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learned policy:\n%s", text)
	if !strings.Contains(string(text), fmt.Sprintf("- {path: %s/, access: w}", f.work)) {
		t.Errorf("the learned policy lacks w on the work directory %s/", f.work)
	}
	if strings.Contains(string(text), "others") {
		t.Errorf("the learned policy names what the run did not use")
	}
	// Every change was observed, each named with its path.
	data, err := os.ReadFile(evs)
	if err != nil {
		t.Fatal(err)
	}
	// (The events file is in text: "[PID n] RENAME TO: path=P op=rename target=true ...".)
	seen := map[string]bool{}
	for _, m := range fileOpLine.FindAllStringSubmatch(string(data), -1) {
		op := m[2]
		if m[3] != "" {
			op += ">"
		}
		seen[op+" "+strings.TrimPrefix(m[1], f.work)] = true
	}
	for _, w := range []string{"mkdir /new", "rename /old.txt", "rename> /new/moved.txt", "unlink /junk.txt", "rmdir /emptydir",
		"symlink /new/link", "link /new/moved.txt", "link> /new/hard", "chmod /mode.txt", "truncate /big.txt"} {
		if !seen[w] {
			t.Errorf("no fileop event %q; saw %v", w, seen)
		}
	}
	if r := assay(t, "policy", "check", pol); r.status != 0 {
		t.Fatalf("assay policy check: status %d\n%s%s", r.status, r.stdout, r.stderr)
	}
	f.reset(t)
	rr := assay(t, "run", "--policy", pol, "--", f.python, f.script, f.work)
	if rr.status != 0 || strings.TrimSpace(rr.stdout) != "changed" || strings.Contains(rr.stderr, "BLOCKED FILE:") {
		t.Fatalf("under the learned policy: status %d, stdout %q\n%s", rr.status, rr.stdout, rr.stderr)
	}
	f.reset(t)
	xr := assay(t, "run", "--policy", pol, "--", f.python, f.script, f.work, f.outside)
	if !strings.Contains(xr.stdout, "changed outside: Permission denied") {
		t.Errorf("removing a file outside the work directory under the learned policy: status %d, stdout %q\n%s", xr.status, xr.stdout, xr.stderr)
	}
	if _, err := os.Stat(f.outside); err != nil {
		t.Errorf("the outside file: %v", err)
	}
}
