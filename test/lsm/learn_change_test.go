//go:build vmtest

package lsm_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// learnScript reads a file through a symbolic link, then changes a work
// directory ($1) without opening anything in it (mkdir, rename into the
// new directory, unlink through a symbolic link to a directory, rmdir,
// symlink, link, chmod, truncate), then runs the probe $2 (learn-attack:
// unlinks whose argument a racing thread rewrites, io_uring's open and
// unlink, a renameat2 with flags); $3, when given, is a file outside the directory it tries to
// remove.
const learnScript = `set -e
cd "$1"
cat lnk.txt
ASSAY_PROBE=learn-attack "$2" "$1/race" 100
mkdir new
mv old.txt new/moved.txt
rm ldir/junk.txt
rmdir emptydir
ln -s moved.txt new/link
ln new/moved.txt new/hard
chmod 600 mode.txt
truncate -s 1 big.txt
echo changed
if [ -n "$3" ]; then rm -f "$3" 2>/dev/null || echo refused; fi
`

// fileOpLine matches an observed change in the text events: path, op, and
// whether it is the new name of a rename or link.
var fileOpLine = regexp.MustCompile(`\] [A-Z ]+: path=(\S+) op=(\w+)( target=true)?`)

// learnWork puts the work directory back as learnScript expects it,
// owned by nobody (who runs the command: chmod needs the owner).
func learnWork(t *testing.T, w string) {
	t.Helper()
	if err := os.RemoveAll(w); err != nil {
		t.Fatal(err)
	}
	for n, c := range map[string]string{"real.txt": "real\n", "old.txt": "o", "realdir/junk.txt": "j", "mode.txt": "m", "big.txt": "big"} {
		writeFile(t, filepath.Join(w, n), c)
	}
	if err := os.Mkdir(filepath.Join(w, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for target, link := range map[string]string{"real.txt": "lnk.txt", "realdir": "ldir"} {
		if err := os.Symlink(target, filepath.Join(w, link)); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(w, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
}

// attackReport is the learn-attack probe's report among the command's
// output lines (the second), or nil.
func attackReport(t *testing.T, lines []string) *assaytest.ProbeResult {
	t.Helper()
	var r assaytest.ProbeResult
	if len(lines) != 3 || json.Unmarshal([]byte(lines[1]), &r) != nil {
		return nil
	}
	return &r
}

// TestLearnLSMChanges: under BPF LSM, assay learn observes in the LSM
// hooks. The records name the objects the kernel operated on, not the
// arguments: the read through lnk.txt is learned as real.txt, the unlink
// through the directory link ldir as realdir/junk.txt (the trace path
// would name ldir/...); so are 100 unlinks whose argument a racing thread
// keeps rewriting (each event names the file removed; the trace path got
// 48 of 100 wrong on the host) and io_uring's open and unlink, which no
// system call carries. Every change is observed and the learned policy
// gives w on the work directory; under assay run with it (BPF LSM
// enforcing) the same script passes with no refusal but one: removing a
// file outside the directory, refused with a BLOCKED FILE event (one
// learn and one run: guest time is CI time). In a guest without BPF LSM
// (arm64 before Linux 6.4) it checks the trace path's observation of the
// changes instead (its syscall numbers), and Landlock's refusal.
func TestLearnLSMChanges(t *testing.T) {
	top := t.TempDir()
	assaytest.PublicDir(t, top)
	w := filepath.Join(top, "work")
	learnWork(t, w)
	outside := filepath.Join(top, "others", "keep.txt")
	writeFile(t, outside, "keep")
	os.Chmod(filepath.Dir(outside), 0o777) // only the policy protects it
	pol := filepath.Join(t.TempDir(), "learned.yaml")
	evs := filepath.Join(t.TempDir(), "events.txt")
	exe := assaytest.PublicExecutable(t)
	lr := assaytest.RunCmd(t, exec.Command(assaytest.Binary(t), "learn", "--out", pol, "--events", evs, "--",
		"/bin/busybox", "sh", "-c", learnScript, "sh", w, exe))
	probe := attackReport(t, lr.Stdout)
	if lr.ExitCode != 0 || probe == nil || strings.Join(lr.Stdout, "") != "real"+lr.Stdout[1]+"changed" {
		t.Fatalf("assay learn: exit %d stdout %q\n%s", lr.ExitCode, lr.Stdout, lr.StderrText())
	}
	if strings.Join(probe.Steps, ", ") != "renameat2: ok, uring-open: ok, uring-unlink: ok" {
		t.Errorf("the probe's io_uring operations: %q", probe.Steps)
	}
	// arm64 before Linux 6.4 has no BPF trampolines, so no BPF LSM: there
	// the trace path's change observation (its syscall numbers) is what
	// this test checks.
	lsm := strings.Contains(lr.StderrText(), "learn: file accesses observed in the BPF LSM hooks")
	if !lsm && (runtime.GOARCH != "arm64" || !strings.Contains(lr.StderrText(), "learn: file accesses observed on the trace path")) {
		t.Fatalf("assay learn did not observe in the LSM hooks:\n%s", lr.StderrText())
	}
	unlinked := "unlink /realdir/junk.txt"
	if !lsm {
		t.Logf("no BPF LSM on %s: checking the trace path's observation of changes only", runtime.GOARCH)
		unlinked = "unlink /ldir/junk.txt" // the argument
	}
	data, err := os.ReadFile(evs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, " OPEN: path="+w+"/"); i >= 0 {
			seen["open "+strings.Fields(l[i+len(" OPEN: path="+w):])[0]] = true
		}
	}
	for _, m := range fileOpLine.FindAllStringSubmatch(string(data), -1) {
		op := m[2]
		if m[3] != "" {
			op += ">"
		}
		seen[op+" "+strings.TrimPrefix(m[1], w)] = true
	}
	for _, want := range []string{"open /real.txt", "mkdir /new", "rename /old.txt", "rename> /new/moved.txt", unlinked,
		"rmdir /emptydir", "symlink /new/link", "link /new/moved.txt", "link> /new/hard", "chmod /mode.txt", "truncate /big.txt",
		"rename /race/r2-old", "rename> /race/r2-new"} {
		if !seen[want] {
			t.Errorf("no event %q; saw %v", want, seen)
		}
	}
	if lsm {
		lsmObserved(t, seen, probe)
	}
	text, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "- {path: "+w+"/, access: rw}") || strings.Contains(string(text), "others") {
		t.Errorf("the learned policy lacks rw on %s/ or names more:\n%s", w, text)
	}
	learnWork(t, w)
	rr := assaytest.RunCmd(t, exec.Command(assaytest.Binary(t), "run", "--policy", pol, "--",
		"/bin/busybox", "sh", "-c", learnScript, "sh", w, exe, outside))
	wantBlocks := 1
	if !lsm {
		wantBlocks = 0 // Landlock: a refused unlink is not reported
	}
	blocks, outsideBlocks := 0, 0
	for _, l := range rr.Stderr {
		if strings.Contains(l, "BLOCKED FILE:") {
			blocks++
			if strings.Contains(l, " op=unlink") && strings.Contains(l, " comm=rm ") {
				outsideBlocks++
			}
		}
	}
	if rr.ExitCode != 0 || len(rr.Stdout) != 4 || rr.Stdout[0] != "real" || rr.Stdout[2] != "changed" || rr.Stdout[3] != "refused" ||
		blocks != wantBlocks || outsideBlocks != wantBlocks {
		t.Errorf("under the learned policy: exit %d stdout %q, %d refusals (want only the outside unlink)\n%s", rr.ExitCode, rr.Stdout, blocks, rr.StderrText())
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the outside file: %v", err)
	}
}

// lsmObserved checks what only the LSM hooks observe: the objects, not the
// arguments (symbolic links, the racing thread), and io_uring.
func lsmObserved(t *testing.T, seen map[string]bool, probe *assaytest.ProbeResult) {
	t.Helper()
	for _, arg := range []string{"open /lnk.txt", "unlink /ldir/junk.txt"} {
		if seen[arg] {
			t.Errorf("event %q names the argument, not the object the kernel operated on", arg)
		}
	}
	// io_uring's open and unlink (no system call carries them) are seen.
	for _, want := range []string{"open /race/uring-read", "unlink /race/uring-gone"} {
		if !seen[want] {
			t.Errorf("no event %q (io_uring)", want)
		}
	}
	// The race: every unlink is named as what it removed, whatever the
	// racing thread had made the argument say by then.
	removed := strings.Fields(probe.Out)
	raced := map[string]bool{}
	for k := range seen {
		if strings.HasPrefix(k, "unlink /race/a/") || strings.HasPrefix(k, "unlink /race/b/") {
			raced[strings.TrimPrefix(k, "unlink /race/")] = true
		}
	}
	wrong := 0
	for _, r := range removed {
		if !raced[r] {
			wrong++
		}
	}
	inB := strings.Count(probe.Out, "b/")
	t.Logf("racing unlinks: %d removed (%d in a, %d in b), %d events", len(removed), len(removed)-inB, inB, len(raced))
	if len(removed) != 100 || len(raced) != 100 || wrong != 0 {
		t.Errorf("racing unlinks: %d removed, %d events, %d removals with no event naming them", len(removed), len(raced), wrong)
	}
}
