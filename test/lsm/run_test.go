//go:build vmtest

package lsm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestRunWithBPFLSM: `assay run` enforces file rules with BPF LSM where it
// is usable: the report says bpf-lsm, the command gets EPERM, a BLOCKED
// FILE event names the rule, and an allowed file reads.
func TestRunWithBPFLSM(t *testing.T) {
	dir := t.TempDir()
	assaytest.PublicDir(t, dir) // the command runs as nobody
	secret := filepath.Join(dir, "secret")
	public := filepath.Join(dir, "public")
	writeFile(t, secret, "s3cret")
	writeFile(t, public, "hello")
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n", secret))
	cmd := exec.Command(assaytest.Binary(t), "run", "--policy", pol, "--", "/bin/busybox", "sh", "-c",
		fmt.Sprintf("cat %s; cat %s", public, secret))
	res := assaytest.RunCmd(t, cmd)
	stderr := res.StderrText()
	if got := strings.Join(res.Stdout, "\n"); got != "hello" {
		t.Errorf("stdout %q, want only the public file's content", got)
	}
	if res.ExitCode == 0 {
		t.Errorf("exit 0: the denied cat succeeded?\n%s", stderr)
	}
	if !strings.Contains(stderr, "Operation not permitted") {
		t.Errorf("no EPERM from cat:\n%s", stderr)
	}
	var report, event bool
	for _, l := range res.Stderr {
		if strings.Contains(l, "rule 7") && strings.Contains(l, "bpf-lsm") {
			report = true
		}
		if strings.Contains(l, "🛡️ BLOCKED FILE: ") && strings.Contains(l, " rule_id=7 ") {
			event = true
		}
	}
	if !report || !event {
		t.Errorf("report names bpf-lsm: %v; BLOCKED FILE event with rule 7: %v\n%s", report, event, stderr)
	}
}

// TestRunLSMBranches: what `assay run` does where BPF LSM works, for the
// host tests that take the other branch (test/run TestRunFileRules,
// TestRunFailsClosed, TestRunWithoutLandlock):
//   - nolandlock: with the Landlock system calls failing ENOSYS, file rules
//     (a file, a directory) are still enforced, by BPF LSM: the run is not
//     refused, the reads get EPERM, and the --output json report says
//     files_mechanism bpf-lsm, bpf-lsm for the deny_path rules and
//     cgroup-bpf for the port rule;
//   - audit: a policy in audit mode with a file rule runs (on the host it
//     is refused: Landlock cannot audit), the read succeeds, the report
//     names bpf-lsm and an AUDIT FILE event names the rule.
func TestRunLSMBranches(t *testing.T) {
	dir := t.TempDir()
	assaytest.PublicDir(t, dir) // the command runs as nobody
	for name, data := range map[string]string{"secret": "s3cret", "sibling": "x", "dir/a": "a", "dir/sub/b": "b"} {
		writeFile(t, filepath.Join(dir, name), data)
	}
	// busybox sh reads each file and prints "NAME ok" or "NAME <cat's error>".
	script := `for f in "$@"; do if e=$(cat "$f" 2>&1 >/dev/null); then echo "$f ok"; else echo "$f $e"; fi; done`
	catAll := func(files ...string) []string {
		args := []string{"--", "/bin/busybox", "sh", "-c", script, "sh"}
		for _, f := range files {
			args = append(args, filepath.Join(dir, f))
		}
		return args
	}

	t.Run("nolandlock", func(t *testing.T) {
		pol := writePolicy(t, fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 1}]\nfiles:\n  deny:\n    - {path: %s/secret, id: 7}\n    - {path: %s/dir/, id: 8}\n", dir, dir))
		evfile := filepath.Join(t.TempDir(), "events.json")
		args := append([]string{"run", "--policy", pol, "--output", "json", "--events", evfile}, catAll("secret", "dir/a", "dir/sub/b", "sibling")...)
		res := assaytest.RunCmd(t, assaytest.WithoutLandlock(t, args...))
		if res.ExitCode != 0 || len(res.Stdout) != 4 {
			t.Fatalf("status %d (want 0), stdout %q\nstderr:\n%s", res.ExitCode, res.Stdout, res.StderrText())
		}
		for i, f := range []string{"secret", "dir/a", "dir/sub/b"} {
			if l := res.Stdout[i]; !strings.HasPrefix(l, filepath.Join(dir, f)+" ") || !strings.Contains(l, "Operation not permitted") {
				t.Errorf("read of %s: %q, want EPERM", f, l)
			}
		}
		if want := filepath.Join(dir, "sibling") + " ok"; res.Stdout[3] != want {
			t.Errorf("read of the sibling: %q, want %q", res.Stdout[3], want)
		}
		data, err := os.ReadFile(evfile)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Type           string `json:"type"`
			FilesMechanism string `json:"files_mechanism"`
			Rules          []struct {
				ID        uint32 `json:"id"`
				Kind      string `json:"kind"`
				Mechanism string `json:"mechanism"`
			} `json:"rules"`
		}
		blocked := map[float64]int{}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var ev map[string]any
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("events file line %q: %v", l, err)
			}
			switch ev["type"] {
			case "enforcement":
				if err := json.Unmarshal([]byte(l), &rep); err != nil {
					t.Fatal(err)
				}
			case "event":
				if ev["kind"] == "file" {
					id, _ := ev["rule_id"].(float64)
					blocked[id]++
				}
			}
		}
		if rep.Type != "enforcement" || rep.FilesMechanism != "bpf-lsm" || len(rep.Rules) != 3 {
			t.Errorf("report %+v, want files_mechanism bpf-lsm and 3 rules", rep)
		}
		for _, r := range rep.Rules {
			want := "bpf-lsm"
			if r.Kind != "deny_path" {
				want = "cgroup-bpf"
			}
			if r.Mechanism != want {
				t.Errorf("rule %d (%s): mechanism %q, want %q", r.ID, r.Kind, r.Mechanism, want)
			}
		}
		if blocked[7] != 1 || blocked[8] != 2 {
			t.Errorf("file events by rule id %v, want 1 for rule 7 and 2 for rule 8", blocked)
		}
	})

	t.Run("audit", func(t *testing.T) {
		pol := writePolicy(t, fmt.Sprintf("version: 1\nmode: audit\nfiles:\n  deny:\n    - {path: %s/secret, id: 7}\n", dir))
		res := assaytest.Run(t, append([]string{"run", "--policy", pol}, catAll("secret")...)...)
		stderr := res.StderrText()
		if want := filepath.Join(dir, "secret") + " ok"; res.ExitCode != 0 || strings.Join(res.Stdout, "\n") != want {
			t.Fatalf("status %d (want 0), stdout %q (want %q)\nstderr:\n%s", res.ExitCode, res.Stdout, want, stderr)
		}
		var report, event bool
		for _, l := range res.Stderr {
			if strings.Contains(l, "rule 7") && strings.Contains(l, "bpf-lsm") {
				report = true
			}
			if strings.Contains(l, " AUDIT FILE: ") && strings.Contains(l, " rule_id=7") {
				event = true
			}
		}
		if !report || !event || strings.Contains(stderr, "NOT ENFORCED") {
			t.Errorf("report names bpf-lsm: %v; AUDIT FILE event with rule 7: %v; want no NOT ENFORCED\n%s", report, event, stderr)
		}
	})
}

// TestRunPolicyV2WithBPFLSM: `assay run` enforces version 2 file rules with
// BPF LSM: the report names bpf-lsm for them, a command started on the
// runtime baseline (busybox from /bin) reads its r tree, gets EPERM outside
// every rule, and the refusal is a BLOCKED FILE event under 1000002.
func TestRunPolicyV2WithBPFLSM(t *testing.T) {
	dir := t.TempDir()
	assaytest.PublicDir(t, dir) // the command runs as nobody
	writeFile(t, filepath.Join(dir, "r", "f"), "hello")
	writeFile(t, filepath.Join(dir, "out", "f"), "s3cret")
	pol := writePolicy(t, fmt.Sprintf("version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: %s/r/, access: r, id: 41}\n", dir))
	cmd := exec.Command(assaytest.Binary(t), "run", "--policy", pol, "--", "/bin/busybox", "sh", "-c",
		fmt.Sprintf("cat %s/r/f; cat %s/out/f", dir, dir))
	res := assaytest.RunCmd(t, cmd)
	stderr := res.StderrText()
	if got := strings.Join(res.Stdout, "\n"); got != "hello" {
		t.Errorf("stdout %q, want only the r tree's file", got)
	}
	if res.ExitCode == 0 || !strings.Contains(stderr, "Operation not permitted") {
		t.Errorf("exit %d, want cat's EPERM:\n%s", res.ExitCode, stderr)
	}
	var report, event bool
	for _, l := range res.Stderr {
		if strings.Contains(l, "rule 41") && strings.Contains(l, "bpf-lsm") {
			report = true
		}
		if strings.Contains(l, "🛡️ BLOCKED FILE: ") && strings.Contains(l, " rule_id=1000002 ") && strings.Contains(l, " op=open") {
			event = true
		}
	}
	if !report || !event {
		t.Errorf("report names bpf-lsm for rule 41: %v; BLOCKED FILE event under 1000002: %v\n%s", report, event, stderr)
	}
}
