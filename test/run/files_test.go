package run_test

// File rules under assay run: the mechanism chosen (BPF LSM or Landlock)
// and failing closed when neither can enforce a rule.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/kernel"
)

// lsmWorks reports whether BPF LSM enforces file rules here (not on the
// development host; yes in the vmtest guest).
func lsmWorks() bool { return kernel.ProbeLSM() == nil }

func TestRunFileRules(t *testing.T) {
	e := newEnv(t)
	root := t.TempDir()
	publicDir(t, root)
	for name, data := range map[string]string{"secret": "s", "sibling": "x", "dir/a": "a", "dir/sub/b": "b"} {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pol := e.policy(fmt.Sprintf(`version: 1
network:
  deny_ports: [{port: 9, id: 1}]
files:
  deny:
    - {path: %s/secret, id: 7}
    - {path: %s/dir/, id: 8}
`, root, root))
	mech, denied := "landlock", "EACCES"
	if lsmWorks() {
		mech, denied = "bpf-lsm", "EPERM"
	}
	evfile := filepath.Join(e.dir, "events.json")
	r := e.run(nil, "--policy", pol, "--output", "json", "--events", evfile, "--", "@", "files",
		"read:"+root+"/secret", "read:"+root+"/dir/a", "read:"+root+"/dir/sub/b",
		"read:"+root+"/sibling", "list:"+root, "exec:/bin/true")
	want := strings.Join([]string{
		"read:" + root + "/secret " + denied,
		"read:" + root + "/dir/a " + denied,
		"read:" + root + "/dir/sub/b " + denied,
		"read:" + root + "/sibling ok",
		"list:" + root + " ok",
		"exec:/bin/true ok",
	}, "\n") + "\n"
	if r.status != 0 || r.stdout != want {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want, r.stderr)
	}
	// --output json: the report is in the event stream; stderr holds only
	// JSON lines.
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if l != "" && !json.Valid([]byte(l)) {
			t.Errorf("stderr line is not JSON: %q", l)
		}
	}
	var rep map[string]any
	for _, ev := range jsonLines(t, evfile) {
		if ev["type"] == "enforcement" {
			rep = ev
			break
		}
	}
	if rep["type"] != "enforcement" || rep["files_mechanism"] != mech {
		t.Errorf("JSON report %v, want files_mechanism %s", rep, mech)
	}
	for _, rr := range rep["rules"].([]any) {
		m := rr.(map[string]any)
		wantMech := mech
		if m["kind"] != "deny_path" {
			wantMech = "cgroup-bpf"
		}
		if m["mechanism"] != wantMech {
			t.Errorf("rule %v: mechanism %v, want %s", m["id"], m["mechanism"], wantMech)
		}
	}
}

// TestRunFailsClosed needs a rule nothing can enforce. On a kernel without
// BPF LSM, audit mode is such a case for file rules (Landlock cannot report
// without blocking).
func TestRunFailsClosed(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here: every rule is enforceable; audit mode with file rules runs (test/lsm TestRunLSMBranches/audit)")
	}
	secret := filepath.Join(e.dir, "secret")
	os.WriteFile(secret, []byte("s"), 0o644)
	pol := e.policy(fmt.Sprintf("version: 1\nmode: audit\nfiles:\n  deny: [{path: %s, id: 7}]\n", secret))
	r := e.run(nil, "--policy", pol, "--", "@", "files", "read:"+secret)
	if r.status != 125 || r.stdout != "" {
		t.Fatalf("status %d (want 125), stdout %q (want none)\n%s", r.status, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^assay:   rule 7\s+deny_path\s+\S+\s+NOT ENFORCED: audit mode needs BPF LSM \(EPERM\)`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "--allow-degraded") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if ents, _ := os.ReadDir(e.parent.Path); len(ents) > 0 {
		for _, ent := range ents {
			if ent.IsDir() {
				t.Errorf("a refused launch created cgroup %s", ent.Name())
			}
		}
	}
	r = e.run(nil, "--policy", pol, "--allow-degraded", "--", "@", "files", "read:"+secret)
	if r.status != 0 || r.stdout != "read:"+secret+" ok\n" {
		t.Errorf("--allow-degraded: status %d, stdout %q\n%s", r.status, r.stdout, r.stderr)
	}
}

// TestRunWithoutLandlock takes Landlock away for real: a seccomp filter
// makes its syscalls fail with ENOSYS, as on a kernel built without it.
// With BPF LSM unusable too, the file rule cannot be enforced.
func TestRunWithoutLandlock(t *testing.T) {
	e := newEnv(t)
	if lsmWorks() {
		t.Skip("BPF LSM works here: file rules do not need Landlock (test/lsm TestRunLSMBranches/nolandlock)")
	}
	secret := filepath.Join(e.dir, "secret")
	os.WriteFile(secret, []byte("s"), 0o644)
	pol := e.policy(fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [9]\nfiles:\n  deny: [{path: %s, id: 7}]\n", secret))
	noLandlock := func(args ...string) result {
		t.Helper()
		cmd := e.command(args...)
		cmd.Args = append([]string{helperBin, "nolandlock"}, cmd.Args...)
		cmd.Path = helperBin
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Run()
		return result{stdout: out.String(), stderr: unmarked(errb.String()), raw: errb.String(), status: status(cmd.ProcessState)}
	}
	r := noLandlock("--policy", pol, "--", "@", "files", "read:"+secret)
	if r.status != 125 || r.stdout != "" {
		t.Fatalf("status %d (want 125), stdout %q (want none)\n%s", r.status, r.stdout, r.stderr)
	}
	for _, re := range []string{
		`(?m)^assay:   rule 1\s+deny_port\s+9\s+cgroup-bpf$`,
		`(?m)^assay:   rule 7\s+deny_path\s+\S+\s+NOT ENFORCED: BPF LSM unavailable \(EPERM\) and Landlock unavailable \(ENOSYS\)$`,
		`(?m)^assay: degraded enforcement: 1 rule\(s\) of the policy cannot be enforced`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
		}
	}
	r = noLandlock("--policy", pol, "--allow-degraded", "--", "@", "files", "read:"+secret)
	if r.status != 0 || r.stdout != "read:"+secret+" ok\n" {
		t.Errorf("--allow-degraded: status %d, stdout %q\n%s", r.status, r.stdout, r.stderr)
	}
}
