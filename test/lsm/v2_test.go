//go:build vmtest

package lsm_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/policy"
)

// TestPolicyV2Files: version 2 file rules under BPF LSM, the table
// in one monitor session. Read, write, create, delete, rename, truncate,
// chmod, exec and mmap-exec inside an r, an rw and an rx tree; a denied
// file inside an allowed tree; an allowed directory inside a denied one;
// files outside every rule under files.default: deny (rule 1000002) and,
// after a SIGHUP reload of the same session, under files.default: allow;
// the runtime baseline starting a dynamically linked program (the host's
// /usr/bin/cat with its loader and libc, on the runtime image test/vm/run.sh
// mounts at /usr; node and python: TestRunBaselineRuntimeBPFLSM) and a
// process's own /proc; a deny rule on a cgroup2 file (cgroup.procs of a
// test cgroup whose directory is rw: read and write refused under both
// defaults, the cgroup's other files readable and writable); Unix sockets (w
// on a named one; an abstract one outside the sandbox follows
// network.default); and, after a second reload,
// audit mode (judged and reported, not refused). Each refusal is a real
// EPERM and one event with the deciding rule's id and op; each allowed
// operation succeeds; the data is intact after the refused changes.
func TestPolicyV2Files(t *testing.T) {
	d := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	for _, tree := range []string{"r", "rw", "rx"} {
		for _, f := range []string{"f", "mv", "del", "trunc", "ch"} {
			writeFile(t, filepath.Join(d, tree, f), tree+"-"+f)
		}
		copyFile(t, busybox, filepath.Join(d, tree, "true"))
		if err := os.Chmod(filepath.Join(d, tree, "true"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, d+"/rw/secret", "s3cret")
	writeFile(t, d+"/rw/over", "over")
	writeFile(t, d+"/deny/other", "other")
	writeFile(t, d+"/deny/open/f", "open-f")
	writeFile(t, d+"/deny/open/del", "open-del")
	writeFile(t, d+"/deny/open/mv", "open-mv")
	for _, f := range []string{"f", "del", "ch"} {
		writeFile(t, d+"/out/"+f, "out-"+f)
	}
	passwd := uint32(0)
	for _, b := range policy.RuntimeBaseline() {
		if b.Path == "/etc/passwd" {
			passwd = b.ID
		}
	}
	if passwd == 0 {
		t.Fatal("the runtime baseline has no /etc/passwd in the guest")
	}
	// A cgroup2 file with a deny rule (cgroup2 is kernfs: its inodes keep
	// their numbers while the cgroup exists, so a rule can name one).
	cgt := assaytest.NewCgroup(t)
	// The probes are this test binary: it must be executable, the Go
	// runtime reads the huge page size when it starts, and the BPF library
	// linked into the binary opens /sys/fs/bpf when it is initialised (a
	// rule on bpffs itself is refused: its inode numbers are not stable;
	// the one on /sys/fs/, sysfs, covers the filesystems mounted there).
	extra := fmt.Sprintf("    - {path: %s, access: rx, id: 50}\n    - {path: /sys/fs/, access: r, id: 52}\n", exe)
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/"); err == nil {
		extra += "    - {path: /sys/kernel/mm/transparent_hugepage/, access: r, id: 51}\n"
	}
	rules := fmt.Sprintf(`  allow:
%[2]s    - {path: %[1]s/r/, access: r, id: 41}
    - {path: %[1]s/rw/, access: rw, id: 42}
    - {path: %[1]s/rx/, access: rx, id: 43}
    - {path: %[1]s/deny/open/, access: rw, id: 46}
    - {path: %[3]s/, access: rw, id: 48}
  deny:
    - {path: %[1]s/rw/secret, id: 44}
    - {path: %[1]s/deny/, id: 45}
    - {path: %[3]s/cgroup.procs, id: 47}
`, d, extra, cgt.Path)
	denyPol := "version: 2\nfiles:\n  default: deny\n  baseline: runtime\n" + rules + "network:\n  default: deny\n"
	allowPol := "version: 2\nfiles:\n  default: allow\n" + rules
	auditPol := "version: 2\nmode: audit\nfiles:\n  default: deny\n" + rules
	// Unix sockets: a named one is a file (w), an abstract one outside the
	// sandbox follows network.default.
	rwSock := listenUnix(t, d+"/rw/sock")
	rxSock := listenUnix(t, d+"/rx/sock")
	abstract := fmt.Sprintf("assay-v2-%d", os.Getpid())
	ab, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	go acceptAll(ab)
	polFile := writePolicy(t, denyPol)

	c := func(what string, rule uint32, op, action string, args ...string) check {
		return check{what: what, rule: rule, op: op, action: action, args: args}
	}
	ok := func(what, action string, args ...string) check {
		return check{what: what, action: action, args: args}
	}
	var table []check
	for _, tr := range []struct {
		name    string
		id      uint32
		r, w, x bool
	}{{"r", 41, true, false, false}, {"rw", 42, true, true, false}, {"rx", 43, true, false, true}} {
		p := d + "/" + tr.name + "/"
		in := " in the " + tr.name + " tree"
		maybe := func(allowed bool, what, op, action string, args ...string) {
			if allowed {
				table = append(table, ok(what+in, action, args...))
			} else {
				table = append(table, c(what+in, tr.id, op, action, args...))
			}
		}
		maybe(tr.r, "read", "open", "open", p+"f", "r")
		maybe(tr.w, "write", "open", "open", p+"f", "w")
		maybe(tr.w, "create", "create", "create", p+"new")
		maybe(tr.w, "delete", "unlink", "unlink", p+"del")
		maybe(tr.w, "rename", "rename", "rename", p+"mv", p+"mv2")
		maybe(tr.w, "truncate", "truncate", "truncate", p+"trunc")
		maybe(tr.w, "chmod", "chmod", "chmod", p+"ch")
		if tr.x {
			table = append(table, ok("exec"+in, "exec", p+"true"))
		} else {
			table = append(table, c("exec"+in, tr.id, "exec", "exec-file", p+"true"))
		}
		maybe(tr.x, "mmap-exec", "mmap", "mmap-exec", p+"f")
	}
	table = append(table,
		// A denied file inside an allowed (rw) tree.
		c("read a denied file in an rw tree", 44, "open", "open", d+"/rw/secret", "r"),
		c("write a denied file in an rw tree", 44, "open", "open", d+"/rw/secret", "w"),
		c("delete a denied file in an rw tree", 44, "unlink", "unlink", d+"/rw/secret"),
		c("chmod a denied file in an rw tree", 44, "chmod", "chmod", d+"/rw/secret"),
		c("rename over a denied file in an rw tree", 44, "rename", "rename", d+"/rw/over", d+"/rw/secret"),
		// An allowed (rw) directory inside a denied one.
		ok("read in an rw directory inside a denied one", "open", d+"/deny/open/f", "r"),
		ok("write in an rw directory inside a denied one", "open", d+"/deny/open/f", "w"),
		ok("create in an rw directory inside a denied one", "create", d+"/deny/open/new"),
		ok("delete in an rw directory inside a denied one", "unlink", d+"/deny/open/del"),
		c("read next to it in the denied directory", 45, "open", "open", d+"/deny/other", "r"),
		c("create in the denied directory", 45, "create", "create", d+"/deny/new"),
		c("move a file out of the rw directory into the denied one", 45, "rename", "rename", d+"/deny/open/mv", d+"/deny/mv"),
		// Outside every rule: files.default: deny.
		c("read outside every rule", 1000002, "open", "open", d+"/out/f", "r"),
		c("write outside every rule", 1000002, "open", "open", d+"/out/f", "w"),
		c("create outside every rule", 1000002, "create", "create", d+"/out/new"),
		c("delete outside every rule", 1000002, "unlink", "unlink", d+"/out/del"),
		c("chmod outside every rule", 1000002, "chmod", "chmod", d+"/out/ch"),
		// The runtime baseline.
		ok("busybox from /bin (baseline rx)", "exec", "/bin/true"),
		ok("the process's own /proc (baseline /proc/self/)", "open", "/proc/self/status", "r"),
		c("another process's /proc", 1000002, "open", "open", "/proc/1/status", "r"),
		ok("/etc/passwd (baseline r)", "open", "/etc/passwd", "r"),
		c("write /etc/passwd (baseline r)", passwd, "open", "open", "/etc/passwd", "w"),
		ok("/dev/null (baseline rw)", "open", "/dev/null", "w"),
		// A deny rule on a cgroup2 file inside an rw cgroup directory.
		c("read a denied cgroup2 file", 47, "open", "open", cgt.Path+"/cgroup.procs", "r"),
		c("write a denied cgroup2 file", 47, "open", "open", cgt.Path+"/cgroup.procs", "w"),
		ok("read another file of the same cgroup", "open", cgt.Path+"/cgroup.max.depth", "r"),
		ok("write another file of the same cgroup", "open", cgt.Path+"/cgroup.max.depth", "w"),
		// Unix sockets.
		ok("connect to a socket in the rw tree", "unix-connect", rwSock),
		c("connect to a socket in the rx tree", 43, "connect", "unix-connect", rxSock),
		c("connect to an abstract socket outside the sandbox (network.default: deny)", 1000000, "connect", "unix-connect-abstract", abstract),
	)
	dynamic := runtime.GOARCH == "amd64"
	if dynamic {
		table = append(table, ok("a dynamically linked program (loader, libc, ld.so.cache: baseline)", "exec", "/usr/bin/cat", d+"/r/f"))
	} else {
		t.Logf("%s guest: no libc, the dynamically linked program is not started", runtime.GOARCH)
	}
	// After the reload: files.default: allow.
	after := []check{
		ok("read outside every rule (default allow)", "open", d+"/out/f", "r"),
		ok("write outside every rule (default allow)", "open", d+"/out/f", "w"),
		ok("create outside every rule (default allow)", "create", d+"/out/new"),
		ok("delete outside every rule (default allow)", "unlink", d+"/out/del"),
		c("write in the r tree (default allow)", 41, "open", "open", d+"/r/f", "w"),
		c("read the denied directory (default allow)", 45, "open", "open", d+"/deny/other", "r"),
		c("mmap-exec in the rw tree (default allow)", 42, "mmap", "mmap-exec", d+"/rw/f"),
		ok("connect to an abstract socket outside the sandbox (no network section)", "unix-connect-abstract", abstract),
		c("read the denied cgroup2 file (default allow)", 47, "open", "open", cgt.Path+"/cgroup.procs", "r"),
		ok("write another file of the same cgroup (default allow)", "open", cgt.Path+"/cgroup.max.depth", "w"),
	}
	// Then audit mode (default deny): judged, reported, not refused.
	audited := []check{
		c("audit: write in the r tree", 41, "open", "open", d+"/r/f", "w"),
		c("audit: read outside every rule", 1000002, "open", "open", d+"/out/g", "r"),
	}
	writeFile(t, d+"/out/g", "out-g")

	// `assay policy check` says every file rule is BPF LSM's here.
	chk := assaytest.Run(t, "policy", "check", polFile)
	out := strings.Join(chk.Stdout, "\n")
	if chk.ExitCode != 0 || strings.Contains(out, "NOT ENFORCED") {
		t.Errorf("policy check: status %d, stdout:\n%s\nstderr:\n%s", chk.ExitCode, out, chk.StderrText())
	}
	for _, re := range []string{
		`(?m)rule 41\s+allow_path\s+\S+/r/ \(r\)\s+bpf-lsm`,
		`(?m)rule 44\s+deny_path\s+\S+/rw/secret\s+bpf-lsm`,
		`(?m)rule 1000002\s+files_default\s+.*bpf-lsm`,
		`(?m)rule 1001000\s+baseline_path\s+.*bpf-lsm`,
		`(?m)rule 1000000\s+network_default\s+.*cgroup-bpf`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("policy check lacks %s:\n%s", re, out)
		}
	}

	cg := assaytest.NewCgroup(t)
	m := assaytest.StartMonitor(t, "monitor", "--policy", polFile, "--cgroup", cg.Path, "--output", "json")
	type done struct {
		check
		r       assaytest.ProbeResult
		verdict string
	}
	var results []done
	blocked := 0
	run := func(checks []check, audit bool) {
		for _, c := range checks {
			r := assaytest.ProbeWith(t, &cg, c.files, c.action, c.args...)
			if audit {
				wantOpened(t, r, c.what)
				blocked++
				results = append(results, done{c, r, "audit"})
				continue
			}
			if c.rule == 0 {
				wantOpened(t, r, c.what)
				if c.action == "exec" && r.Exit != 0 {
					t.Errorf("%s: exit status %d, stderr %q", c.what, r.Exit, r.Err)
				}
			} else {
				wantBlocked(t, r, c.what)
				blocked++
			}
			results = append(results, done{c, r, "blocked"})
		}
	}
	run(table, false)
	if dynamic {
		if r := results[len(results)-1].r; r.Out != "r-f" {
			t.Errorf("/usr/bin/cat printed %q, want %q", r.Out, "r-f")
		}
	}
	if err := os.WriteFile(polFile, []byte(allowPol), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Signal(syscall.SIGHUP)
	m.WaitStderr("assay: reloaded "+polFile, 1, eventTimeout)
	run(after, false)
	if err := os.WriteFile(polFile, []byte(auditPol), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Signal(syscall.SIGHUP)
	m.WaitStderr("assay: reloaded "+polFile, 2, eventTimeout)
	run(audited, true)
	m.WaitEvents(blocked, eventTimeout)
	res := m.Stop()
	for _, d := range results {
		evs := fileEvents(res, d.r.PID)
		if d.rule == 0 {
			if len(evs) != 0 {
				t.Errorf("%s: allowed, yet events %+v", d.what, evs)
			}
			continue
		}
		if len(evs) != 1 || evs[0].RuleID != d.rule || evs[0].Op != d.op || evs[0].Verdict != d.verdict {
			t.Errorf("%s: events %+v, want one %s %s under rule %d", d.what, evs, d.verdict, d.op, d.rule)
		}
	}
	if len(res.Events) != blocked {
		t.Errorf("%d events, want %d:\n%s", len(res.Events), blocked, strings.Join(res.EventLines, "\n"))
	}

	// The data is intact after the refused changes; the allowed ones
	// happened.
	for p, want := range map[string]string{
		"out/g": "out-g", "r/f": "r-f", "r/del": "r-del", "r/mv": "r-mv", "r/trunc": "r-trunc", "rx/f": "rx-f", "rx/trunc": "rx-trunc",
		"rw/secret": "s3cret", "rw/over": "over", "deny/other": "other", "deny/open/mv": "open-mv", "out/ch": "out-ch",
		"rw/trunc": "",
	} {
		if b, err := os.ReadFile(filepath.Join(d, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"r/new", "rx/new", "r/mv2", "rx/mv2", "deny/new", "deny/mv", "rw/del", "rw/mv", "deny/open/del", "out/del"} {
		if _, err := os.Lstat(filepath.Join(d, p)); err == nil {
			t.Errorf("%s exists", p)
		}
	}
	for _, p := range []string{"rw/new", "rw/mv2", "deny/open/new", "out/new"} {
		if _, err := os.Lstat(filepath.Join(d, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for p, want := range map[string]os.FileMode{"r/ch": 0o644, "rx/ch": 0o644, "rw/secret": 0o644, "out/ch": 0o644, "rw/ch": 0o777} {
		if fi, err := os.Stat(filepath.Join(d, p)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v %v, want %v", p, fi.Mode().Perm(), err, want)
		}
	}
}
