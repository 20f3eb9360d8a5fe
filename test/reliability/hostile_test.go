package reliability_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/policy"
)

// Bounds for `assay policy check` on a hostile file: generous sanity
// bounds, not performance targets (the measured figures are logged). The
// time bound is on CPU time (user plus system, every thread, from the
// child's rusage), not the wall clock: the work a file costs does not
// depend on how busy the machine is, the wall clock does (10-14 s were
// measured for 0.8 s of work at a load average of 25). A hang without
// work is caught by the probe's own timeout.
const (
	hostileCPUBound = 8 * time.Second
	hostileRSSBound = 512 << 20
)

// TestHostilePolicyFiles: `assay policy check` on files built to exhaust
// the parser - too large, 16 MiB of tiny elements, a 16 MiB mapping, deep
// nesting, an anchor/alias bomb, a 16 MiB scalar - or to smuggle control
// characters (a newline, an escape sequence, NUL, invalid UTF-8) exits 1
// with one clear line naming the file, within a CPU time bound and with a
// bounded peak RSS (both measured with getrusage, logged).
func TestHostilePolicyFiles(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	big := policy.MaxPolicyBytes
	fill := func(head, unit, tail string, size int) string {
		n := (size - len(head) - len(tail)) / len(unit)
		return head + strings.Repeat(unit, n) + tail
	}
	bomb := "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		bomb += fmt.Sprintf("%s: &%s [%s]\n", name, name, strings.TrimSuffix(strings.Repeat("*"+prev+", ", 10), ", "))
		prev = name
	}
	cases := []struct {
		name, text string
		want       string // in the error line
	}{
		{"over 16 MiB", fill("version: 1\n", "# padding\n", "", big+mib), "larger than"},
		{"16 MiB flow sequence of tiny elements", fill("version: 1\nnetwork:\n  deny_ports: [", "1,", "1]\n", big), "too many YAML elements"},
		{"16 MiB block sequence", fill("version: 1\nnetwork:\n  deny_ports:\n", "    - 1\n", "", big), "too many YAML elements"},
		{"16 MiB flow mapping of bare keys", fill("version: 1\nx: {", "k,", "k}\n", big), "too many YAML elements"},
		{"8M levels of nesting", "version: 1\nx: " + strings.Repeat("[", 8*mib-16) + strings.Repeat("]", 8*mib-16) + "\n", "too many YAML elements"},
		{"10000 levels of nesting", "version: 1\nx: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n", "nesting deeper than 16 levels"},
		{"17 levels of nesting", "version: 1\nx: " + strings.Repeat("[", 17) + strings.Repeat("]", 17) + "\n", "nesting deeper than 16 levels"},
		{"anchor and alias bomb (10^10 elements expanded)", bomb, "YAML anchors and aliases are not allowed"},
		{"elements just under the bound", "version: 1\nx:\n" + strings.Repeat("  ? \n", policy.MaxElements/3-10), "unknown field \"x\""},
		{"16 MiB scalar", fill("version: 1\nmode: ", "a", "\n", big), "mode"},
		{"newline in a path", "version: 1\nfiles:\n  deny: [\"/etc/a\\nb\"]\n", "contains a control character"},
		{"terminal escape in a path", "version: 1\nfiles:\n  deny: [\"/tmp/\\e]0;pwned\\a\\e[2J\"]\n", "contains a control character"},
		{"raw NUL bytes", "version: 1\nmode: enf\x00orce\n", "invalid YAML"},
		{"invalid UTF-8", "version: 1\nmode: \xff\xfe\n", "invalid YAML"},
		{"raw escape sequence in a key", "version: 1\n\x1b[2Jx: 1\n", "control characters are not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "hostile.yaml")
			if err := os.WriteFile(file, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			// The peak RSS is measured by a fresh probe process that runs
			// assay: getrusage of a child counts the memory it shares
			// with its parent until exec, and this test process is large.
			start := time.Now()
			r := assaytest.Probe(t, nil, "exec-rusage", assaytest.Binary(t), "policy", "check", file)
			elapsed := time.Since(start)
			if r.Errno != "" {
				t.Fatalf("exec assay: %s", r.Err)
			}
			rss := uint64(r.MaxRSS)
			t.Logf("%d bytes: exit %d, CPU %v, peak RSS %.1f MiB (wall clock %v, probe included)", len(c.text), r.Exit, r.CPU.Round(time.Millisecond), float64(rss)/mib, elapsed.Round(time.Millisecond))
			if r.Exit != 1 {
				t.Errorf("exit status %d, want 1", r.Exit)
			}
			lines := strings.Split(strings.TrimSuffix(r.Err, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "assay: "+file+":") || !strings.Contains(lines[0], c.want) || len(lines[0]) > 1024 {
				t.Errorf("want one line (at most 1 KiB) starting %q and containing %q, got %d bytes:\n%.2000s", "assay: "+file+":", c.want, len(r.Err), r.Err)
			}
			if strings.ContainsFunc(lines[0], func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Errorf("the error line holds a control character: %q", lines[0])
			}
			if r.Out != "" {
				t.Errorf("stdout: %.200q", r.Out)
			}
			if r.CPU <= 0 || r.CPU > hostileCPUBound {
				t.Errorf("CPU time %v, want more than 0 and at most %v", r.CPU, hostileCPUBound)
			}
			if rss > hostileRSSBound {
				t.Errorf("peak RSS %d MiB, more than %d MiB", rss/mib, hostileRSSBound/mib)
			}
		})
	}
}

// forgedComm is the name a probe gives itself to forge an operator line;
// the kernel keeps its first 15 bytes (cutting the emoji's UTF-8).
const forgedComm = "x\n[PID 1] 🛡️ BLOCKED"

// TestCommCannotForgeLines: a process renames itself (prctl PR_SET_NAME)
// to a newline followed by the start of an operator line, then makes a
// denied connect. Two monitors stacked on its cgroup, text and JSON, each
// print exactly one line for it: the text line quotes the comm (newline
// escaped), no line starts with the forged "[PID 1]", and the JSON event
// carries the name as a string.
func TestCommCannotForgeLines(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	_, addr := listen(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %s, id: 50}]\n", port)
	text := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path)
	js := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")

	r := assaytest.Probe(t, &cg, "set-comm", forgedComm, "connect", "tcp4", addr)
	requireEPERM(t, "connect after renaming", r)
	comm := forgedComm[:15]
	text.WaitEvents(1, eventTimeout)
	js.WaitEvents(1, eventTimeout)
	tres, jres := text.Stop(), js.Stop()

	want := fmt.Sprintf("[PID %d] 🛡️ BLOCKED CONNECT: dst=%s proto=tcp cgroup=%d rule_id=50 family=inet comm=%s tid=%d",
		r.PID, addr, cg.ID, strconv.Quote(comm), r.TID)
	if len(tres.Stdout) != 1 || tres.Stdout[0] != want {
		t.Errorf("text stdout:\n%s\nwant exactly:\n%s", strings.Join(tres.Stdout, "\n"), want)
	}
	for _, out := range [][]string{tres.Stdout, tres.Stderr, jres.Stdout, jres.Stderr} {
		for _, l := range out {
			if strings.HasPrefix(l, "[PID 1]") {
				t.Errorf("a forged line: %q", l)
			}
		}
	}
	if len(jres.Events) != 1 || jres.Events[0].Comm != strings.ToValidUTF8(comm, "\uFFFD") || int(jres.Events[0].PID) != r.PID {
		t.Errorf("JSON events %+v; want one of pid %d with comm %q", jres.Events, r.PID, comm)
	}
	t.Logf("text line: %s", tres.Stdout)
}

// TestTracePathCannotForgeLines: with --trace, the OPEN line of a file
// whose name holds a newline and an escape sequence stays one line, the
// path quoted.
func TestTracePathCannotForgeLines(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 51}]\n")
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--trace")
	path := filepath.Join(t.TempDir(), "x\n[PID 1] 🛡️ BLOCKED FILE: \x1b[2J")
	if err := os.WriteFile(path, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := assaytest.Probe(t, &cg, "open", path, "r")
	requireOK(t, "open", r)
	quoted := "path=" + strconv.Quote(path) + " "
	deadline := time.Now().Add(eventTimeout)
	for !hasLine(m.Stdout(), quoted) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	res := m.Stop()
	found := 0
	for _, l := range res.Stdout {
		if strings.HasPrefix(l, "[PID 1]") || strings.ContainsAny(l, "\x1b\r") {
			t.Errorf("a forged or unescaped line: %q", l)
		}
		if strings.Contains(l, quoted) {
			found++
			if !strings.HasPrefix(l, fmt.Sprintf("[PID %d] OPEN: %s", r.PID, quoted)) || !strings.HasSuffix(l, " observation=trace") {
				t.Errorf("OPEN line %q", l)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d OPEN lines with %s, want 1; stdout:\n%s", found, quoted, strings.Join(res.Stdout, "\n"))
	}
}

// TestCannotLeaveScope: a process running as nobody (uid/gid 65534) in
// the monitored cgroup cannot write its pid into the parent's or the
// root's cgroup.procs (EACCES), stays in its cgroup, and its denied
// connect is still refused. The same attempt as root does succeed (the
// documented limit: a root process with CAP_SYS_ADMIN can leave), which
// shows the refusal is the kernel's permission check, not a broken probe.
func TestCannotLeaveScope(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	parent := assaytest.NewCgroup(t)
	child, err := cgroup.CreateLeaf(parent.Path, "child")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cgroup.Remove(child) })
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	l, addr := listen(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 60}]\n", l.Port())
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", child.Path, "--output", "json")
	mnt, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	rel := func(s cgroup.Scope) string { return "/" + strings.TrimPrefix(strings.TrimPrefix(s.Path, mnt), "/") }
	targets := []string{filepath.Join(parent.Path, "cgroup.procs"), filepath.Join(root.Path, "cgroup.procs")}

	r := assaytest.Probe(t, &child, "as-user", append([]string{"65534", "65534", "leave-cgroup", "tcp4", addr}, targets...)...)
	want := []string{targets[0] + ": EACCES", targets[1] + ": EACCES", "cgroup: " + rel(child)}
	if strings.Join(r.Steps, "|") != strings.Join(want, "|") {
		t.Errorf("as nobody: steps %q, want %q", r.Steps, want)
	}
	requireEPERM(t, "connect as nobody after the attempts", r)
	m.WaitEvents(1, eventTimeout)

	// As root the move succeeds, and the connect from outside the scope
	// passes: exactly what the README lists as out of scope.
	rr := assaytest.Probe(t, &child, "leave-cgroup", "tcp4", addr, targets[0])
	if want := []string{targets[0] + ": ok", "cgroup: " + rel(parent)}; strings.Join(rr.Steps, "|") != strings.Join(want, "|") {
		t.Errorf("as root: steps %q, want %q", rr.Steps, want)
	}
	requireOK(t, "connect as root after moving to the parent", rr)
	requireAccepted(t, l, rr)
	res := m.Stop()
	if evs := eventsOf(res.Events, r.PID); len(evs) != 1 || evs[0].RuleID != 60 || evs[0].CgroupID != child.ID {
		t.Errorf("events of the nobody probe %+v; want one, rule 60, cgroup %d", evs, child.ID)
	}
}
