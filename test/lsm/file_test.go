//go:build vmtest

package lsm_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
	"golang.org/x/sys/unix"
)

// eventTimeout bounds the guest tests' waits for what must come (an event
// line, a reload message, a probe's start): a hang guard, not a performance
// bound. Under TCG on a busy host (2 cores at a load average of 25) these
// took over 20 s; on an idle one, well under a second. It scales with
// ASSAY_TIMEOUT_SCALE like assaytest's (the arm64 guest).
var eventTimeout = assaytest.Scaled(2 * time.Minute)

// writePolicy writes a policy file and returns its path.
func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// identity is what the kernel sees of path: (s_dev, i_ino).
func identity(t *testing.T, path string) (uint32, uint64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return kernelDev(st.Dev), st.Ino
}

func wantBlocked(t *testing.T, r assaytest.ProbeResult, what string) {
	t.Helper()
	if r.Errno != "EPERM" {
		t.Errorf("%s: errno=%q err=%q out=%q, want EPERM", what, r.Errno, r.Err, r.Out)
	}
}

func wantOpened(t *testing.T, r assaytest.ProbeResult, what string) {
	t.Helper()
	if !r.Ok() {
		t.Errorf("%s: errno=%q err=%q, want success", what, r.Errno, r.Err)
	}
}

// fileEvent finds the event of a probe (by pid) in a result.
func fileEvents(res assaytest.Result, pid int) []events.JSONEvent {
	var out []events.JSONEvent
	for _, e := range res.Events {
		if e.Kind == "file" && int(e.PID) == pid {
			out = append(out, e)
		}
	}
	return out
}

// TestExactRule: an exact rule blocks open for read and for write inside
// the scope, with an event naming the right pid, cgroup, dev, ino and rule;
// the same file opens from outside the scope, and again after the monitor
// exits.
func TestExactRule(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "credentials.txt")
	writeFile(t, secret, "s3cret")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n", secret))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")

	rd := assaytest.Probe(t, &cg, "open", secret, "r")
	wantBlocked(t, rd, "read in scope")
	wr := assaytest.Probe(t, &cg, "open", secret, "w")
	wantBlocked(t, wr, "write in scope")
	out := assaytest.Probe(t, nil, "open", secret, "r")
	wantOpened(t, out, "read outside scope")
	if out.Out != "s3cret" {
		t.Errorf("outside read %q", out.Out)
	}
	m.WaitEvents(2, eventTimeout)
	res := m.Stop()

	dev, ino := identity(t, secret)
	for _, pr := range []assaytest.ProbeResult{rd, wr} {
		evs := fileEvents(res, pr.PID)
		if len(evs) != 1 {
			t.Fatalf("pid %d: %d events, want 1: %v", pr.PID, len(evs), res.EventLines)
		}
		e := evs[0]
		if e.Verdict != "blocked" || e.RuleID != 7 || e.CgroupID != cg.ID || e.Dev == nil || *e.Dev != dev ||
			e.Ino == nil || *e.Ino != ino || e.Op != "open" || e.RulePath != secret || int(e.TID) != pr.TID {
			t.Errorf("event %+v; want rule 7 cgroup %d dev %d ino %d path %s", e, cg.ID, dev, ino, secret)
		}
	}
	if len(res.Events) != 2 {
		t.Errorf("%d events, want 2 (nothing for the outside read): %v", len(res.Events), res.EventLines)
	}
	if res.Summary.LSM.Emitted != uint64(len(res.Events)) || res.Summary.LSM.Dropped != 0 {
		t.Errorf("summary LSM %+v, events %d", res.Summary.LSM, len(res.Events))
	}
	after := assaytest.Probe(t, &cg, "open", secret, "r")
	wantOpened(t, after, "read in scope after the monitor exited")
}

// TestTextLine: the operator line has exactly the seed's shape.
func TestTextLine(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	writeFile(t, secret, "x")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n", secret))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path)
	r := assaytest.Probe(t, &cg, "open", secret, "r")
	wantBlocked(t, r, "read")
	m.WaitEvents(1, eventTimeout)
	res := m.Stop()
	dev, ino := identity(t, secret)
	re := regexp.MustCompile(fmt.Sprintf(`^\[PID %d\] 🛡️ BLOCKED FILE: dev=%d ino=%d cgroup=%d rule_id=7 op=open comm=\S+ tid=%d$`, r.PID, dev, ino, cg.ID, r.TID))
	if len(res.EventLines) != 1 || !re.MatchString(res.EventLines[0]) {
		t.Errorf("lines %q, want match %s", res.EventLines, re)
	}
	if !res.HasSummary || res.Summary.LSM.Emitted != 1 {
		t.Errorf("summary %+v\n%s", res.Summary, res.StderrText())
	}
}

// TestSameInodeOtherNames: the rule follows the inode, not the name.
func TestSameInodeOtherNames(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "s3cret")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n", secret))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")
	defer m.Stop()

	// Names made after the monitor started, by a process outside the scope.
	sym := filepath.Join(dir, "sym")
	if err := os.Symlink(secret, sym); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard")
	if err := os.Link(secret, hard); err != nil {
		t.Fatal(err)
	}
	bind := filepath.Join(t.TempDir(), "bind")
	writeFile(t, bind, "")
	if err := unix.Mount(secret, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bind, unix.MNT_DETACH)

	wantBlocked(t, assaytest.Probe(t, &cg, "open", sym, "r"), "symlink")
	wantBlocked(t, assaytest.Probe(t, &cg, "open", hard, "r"), "hard link")
	wantBlocked(t, assaytest.Probe(t, &cg, "open", bind, "r"), "bind mount")
	wantBlocked(t, assaytest.Probe(t, &cg, "reopen", secret), "/proc/self/fd reopen of an O_PATH fd")
	wantBlocked(t, assaytest.Probe(t, &cg, "spawn-grandchild", "open", secret, "r"), "grandchild")
	// Also through the real cat, fork+exec'd by a probe.
	g := assaytest.Probe(t, &cg, "spawn-grandchild", "cat", secret)
	if g.Exit == 0 || strings.Contains(g.Out, "s3cret") {
		t.Errorf("grandchild cat read the file: %+v", g)
	}

	renamed := filepath.Join(dir, "renamed")
	if err := os.Rename(secret, renamed); err != nil {
		t.Fatal(err)
	}
	wantBlocked(t, assaytest.Probe(t, &cg, "open", renamed, "r"), "renamed within the filesystem")
	// A sandboxed process may not give the protected inode a new name.
	wantBlocked(t, assaytest.Probe(t, &cg, "link", renamed, filepath.Join(dir, "mine")), "link(2) in scope")
	wantBlocked(t, assaytest.Probe(t, &cg, "rename", renamed, filepath.Join(dir, "moved")), "rename(2) in scope")
}

// TestDirectoryRule: a directory rule covers its whole subtree, files made
// after the start, a filesystem mounted inside it and a bind mount of it
// elsewhere; a sibling directory is untouched.
func TestDirectoryRule(t *testing.T) {
	root := t.TempDir()
	denied := filepath.Join(root, "ssh")
	existing := filepath.Join(denied, "id_ed25519")
	nested := filepath.Join(denied, "a", "b", "c", "config")
	sibling := filepath.Join(root, "work", "notes.txt")
	writeFile(t, existing, "key")
	writeFile(t, nested, "cfg")
	writeFile(t, sibling, "notes")
	inner := filepath.Join(denied, "mnt")
	os.Mkdir(inner, 0o755)

	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s/, id: 9}\n", denied))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")

	later := filepath.Join(denied, "a", "created-later")
	writeFile(t, later, "new")
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(inner, unix.MNT_DETACH)
	inMount := filepath.Join(inner, "x")
	writeFile(t, inMount, "x")
	bindDir := filepath.Join(t.TempDir(), "elsewhere")
	os.Mkdir(bindDir, 0o755)
	if err := unix.Mount(filepath.Join(denied, "a"), bindDir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bindDir, unix.MNT_DETACH)

	for name, p := range map[string]string{
		"existing file":          existing,
		"nested file":            nested,
		"file created later":     later,
		"the directory itself":   denied,
		"file in a mount inside": inMount,
		"bind mount of a subdir": filepath.Join(bindDir, "b", "c", "config"),
	} {
		wantBlocked(t, assaytest.Probe(t, &cg, "open", p, "r"), name)
	}
	wantOpened(t, assaytest.Probe(t, &cg, "open", sibling, "r"), "sibling directory")
	wantOpened(t, assaytest.Probe(t, nil, "open", nested, "r"), "outside the scope")
	// Giving a file in the subtree a name outside it is refused.
	wantBlocked(t, assaytest.Probe(t, &cg, "link", existing, filepath.Join(root, "work", "stolen")), "hard link out of the subtree")
	wantBlocked(t, assaytest.Probe(t, &cg, "rename", existing, filepath.Join(root, "work", "stolen")), "rename out of the subtree")
	if _, err := os.Stat(existing); err != nil {
		t.Errorf("the refused rename moved the file: %v", err)
	}
	m.WaitEvents(8, eventTimeout)
	res := m.Stop()
	for _, e := range res.Events {
		if e.RuleID != 9 || e.CgroupID != cg.ID || e.RulePath != denied {
			t.Errorf("event %+v: want rule 9, cgroup %d, rule_path %s", e, cg.ID, denied)
		}
	}
	if got := res.Summary.LSM.Emitted; got != uint64(len(res.Events)) || got != 8 {
		t.Errorf("LSM emitted %d, events %d, want 8 (6 opens, a link, a rename)", got, len(res.Events))
	}
}

// TestDeepNestFailsClosed: a nest deeper than the in-kernel walk inside a
// denied directory cannot escape the rule.
func TestDeepNestFailsClosed(t *testing.T) {
	root := t.TempDir()
	denied := filepath.Join(root, "d")
	os.Mkdir(denied, 0o755)
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s/, id: 9}\n", denied))
	// Build 200 levels with relative mkdirat/openat (paths beyond PATH_MAX are fine this way).
	fd, err := unix.Open(denied, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		unix.Mkdirat(fd, "n", 0o755)
		nfd, err := unix.Openat(fd, "n", unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = nfd
	}
	f, err := unix.Openat(fd, "deep.txt", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(f)
	deepDir := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)
	target, _ := os.Readlink(deepDir)
	defer unix.Close(fd)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")
	// The probe opens via the real (long) path relative to a chdir; use cwd-relative
	// walking inside the probe: "open-deep" walks DIR/n/n/... with openat.
	r := assaytest.Probe(t, &cg, "open-deep", denied, "200", "deep.txt")
	wantBlocked(t, r, "file 200 levels below a denied directory ("+target[:40]+"...)")
	m.WaitEvents(1, eventTimeout)
	res := m.Stop()
	if len(res.Events) != 1 || res.Events[0].RuleID != 1000001 {
		t.Errorf("events %v, want one with the reserved too-deep rule id 1000001", res.EventLines)
	}
}

// TestDeviceEncoding: rules on a filesystem with a non-zero major (ext4 on
// a loop device) and on one with a minor above 255 (where stat's st_dev and
// the kernel's s_dev differ) block.
func TestDeviceEncoding(t *testing.T) {
	ext4 := mountExt4Loop(t)
	high := mountHighMinorTmpfs(t)
	a := filepath.Join(ext4, "secret-a")
	b := filepath.Join(high, "secret-b")
	writeFile(t, a, "a")
	writeFile(t, b, "b")
	if unix.Major(statDev(t, ext4)) == 0 {
		t.Fatalf("ext4 on loop has major 0")
	}
	if unix.Minor(statDev(t, high)) <= 255 {
		t.Fatalf("tmpfs minor %d is not above 255", unix.Minor(statDev(t, high)))
	}
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 1}\n    - {path: %s, id: 2}\n", a, b))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")
	wantBlocked(t, assaytest.Probe(t, &cg, "open", a, "r"), "ext4 on loop (major 7)")
	wantBlocked(t, assaytest.Probe(t, &cg, "open", b, "r"), "tmpfs with minor > 255")
	m.WaitEvents(2, eventTimeout)
	res := m.Stop()
	da, _ := identity(t, a)
	db, _ := identity(t, b)
	got := map[uint32]uint32{}
	for _, e := range res.Events {
		got[e.RuleID] = *e.Dev
	}
	if got[1] != da || got[2] != db {
		t.Errorf("event devs %v, want rule 1 dev %d, rule 2 dev %d", got, da, db)
	}
}

// TestAuditMode: audit lets the open through and reports AUDIT FILE, from
// the flag and from the policy's mode.
func TestAuditMode(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	writeFile(t, secret, "s3cret")
	for _, tc := range []struct {
		name, policy string
		flags        []string
	}{
		{"flag", "version: 1\nfiles:\n  deny:\n    - {path: " + secret + ", id: 7}\n", []string{"--audit"}},
		{"policy", "version: 1\nmode: audit\nfiles:\n  deny:\n    - {path: " + secret + ", id: 7}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg := assaytest.NewCgroup(t)
			args := append([]string{"monitor", "--policy", writePolicy(t, tc.policy), "--cgroup", cg.Path}, tc.flags...)
			m := assaytest.StartMonitor(t, args...)
			r := assaytest.Probe(t, &cg, "open", secret, "r")
			wantOpened(t, r, "audit-mode read")
			if r.Out != "s3cret" {
				t.Errorf("read %q", r.Out)
			}
			m.WaitEvents(1, eventTimeout)
			res := m.Stop()
			if len(res.EventLines) != 1 || !strings.Contains(res.EventLines[0], fmt.Sprintf("[PID %d] ", r.PID)) ||
				!strings.Contains(res.EventLines[0], " AUDIT FILE: ") || !strings.Contains(res.EventLines[0], " rule_id=7") {
				t.Errorf("lines %q, want one AUDIT FILE line for pid %d", res.EventLines, r.PID)
			}
			if res.Summary.LSM.Emitted != 1 {
				t.Errorf("summary %+v", res.Summary.LSM)
			}
		})
	}
}

// TestTrace: the tracepoint path reports an in-scope cat (path and pid:
// the opened file and the executed file, as the kernel names them) and
// nothing for a process outside the scope; it decides nothing.
func TestTrace(t *testing.T) {
	catPath, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	if catPath, err = filepath.EvalSymlinks(catPath); err != nil { // busybox
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "observed.txt")
	writeFile(t, file, "hello")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [9]\n")
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--trace", "--output", "json")
	in := assaytest.Probe(t, &cg, "cat", file)
	if in.Exit != 0 || in.Out != "hello" {
		t.Fatalf("in-scope cat: %+v", in)
	}
	outside := assaytest.Probe(t, nil, "cat", file)
	if outside.Exit != 0 {
		t.Fatalf("outside cat: %+v", outside)
	}
	time.Sleep(500 * time.Millisecond)
	res := m.Stop()
	var sawOpen, sawExec bool
	for _, e := range res.Events {
		if int(e.PID) == outside.ChildPID || int(e.PID) == outside.PID {
			t.Errorf("event for an out-of-scope process: %+v", e)
		}
		if e.Verdict != "observed" {
			t.Errorf("trace event with verdict %q: %+v", e.Verdict, e)
		}
		if int(e.PID) == in.ChildPID && e.Kind == "open" && e.Path == file && e.PathSource == "file" {
			sawOpen = true
		}
		if int(e.PID) == in.ChildPID && e.Kind == "exec" && e.Path == catPath && e.PathSource == "file" {
			sawExec = true
		}
	}
	if !sawOpen || !sawExec {
		t.Errorf("open seen %v, exec seen %v, for cat pid %d; events:\n%s", sawOpen, sawExec, in.ChildPID, strings.Join(res.EventLines, "\n"))
	}
	if res.Summary.Tracepoint.Emitted != uint64(len(res.Events)) || res.Summary.Tracepoint.Dropped != 0 {
		t.Errorf("tracepoint summary %+v, events %d", res.Summary.Tracepoint, len(res.Events))
	}
}
