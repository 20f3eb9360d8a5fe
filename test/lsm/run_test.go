//go:build vmtest

package lsm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/testenv"
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

// guestRuntime returns the paths of node and python in the amd64 guest:
// test/vm/run.sh puts the host's node and Debian's python3 (with its
// standard library and every library they load) on a read-only ext4 disk
// that /init mounts at /usr, and names them in ASSAY_NODE and ASSAY_PYTHON.
// Other guests have no libc: "", "". Missing in the amd64 guest, the test
// skips, or fails under CI.
func guestRuntime(t *testing.T) (node, python string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Logf("%s guest: no libc, no node, no python", runtime.GOARCH)
		return "", ""
	}
	node, python = os.Getenv("ASSAY_NODE"), os.Getenv("ASSAY_PYTHON")
	for _, p := range []string{node, python} {
		if p == "" {
			testenv.Skip(t, "the guest has no node or no python (ASSAY_NODE, ASSAY_PYTHON): test/vm/run.sh found none on the host")
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (is the runtime image mounted at /usr?)", err)
		}
	}
	return node, python
}

// TestRunPolicyV2WithBPFLSM: `assay run` enforces version 2 file rules with
// BPF LSM (the report names bpf-lsm for them), and the runtime baseline
// lets real runtimes start under files.default: deny (test/run's
// TestRunBaselineRuntime, here under BPF LSM). One assay start, one shell
// script: busybox (from /bin), node (the host's /usr/bin/node, dynamically
// linked to libstdc++), python (Debian's, -I, importing ssl, json and
// locale) and a Go program (assay itself), all from their real paths (/usr
// is the runtime image on an ext4 disk, the loader cache is /etc's), each
// read a file of the allowed r tree; busybox, node and python then try a
// file outside every rule and get EPERM from the kernel. Those three
// refusals, under files.default (1000002), naming the file's inode, are the
// session's only events: nothing the runtimes read or map when they start
// is refused (a gap in the baseline would be an event here).
func TestRunPolicyV2WithBPFLSM(t *testing.T) {
	node, python := guestRuntime(t)
	dir := t.TempDir()
	assaytest.PublicDir(t, dir) // the command runs as nobody
	allowed, secret := filepath.Join(dir, "r", "f"), filepath.Join(dir, "out", "f")
	writeFile(t, allowed, "hello")
	writeFile(t, secret, "s3cret")
	var st syscall.Stat_t
	if err := syscall.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	pol := writePolicy(t, fmt.Sprintf("version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: %s/r/, access: r, id: 41}\n", dir))

	// Each program reads the allowed file, then tries the secret: one start
	// each (a start of node takes seconds under TCG).
	type step struct{ name, cmd, want string }
	steps := []step{{"busybox", fmt.Sprintf(`cat %[1]s && echo; cat %[2]s 2>&1 | grep -q "Operation not permitted" && echo "busybox: EPERM"`, allowed, secret),
		"hello\nbusybox: EPERM"}}
	wantComms := map[string]int{"busybox": 1}
	if node != "" {
		steps = append(steps,
			step{"node", fmt.Sprintf(`%s -e '
const fs = require("fs"), os = require("os");
console.log("node", os.cpus().length > 0, require("crypto").randomBytes(4).length, Intl.DateTimeFormat().resolvedOptions().timeZone.length > 0, fs.readFileSync(%q, "utf8"));
try { fs.readFileSync(%q); console.log("node: read it") } catch (e) { console.log("node:", e.code) }'`, node, allowed, secret),
				"node true 4 true hello\nnode: EPERM"},
			step{"python", fmt.Sprintf(`%s -I -c '
import os, ssl, json, locale, errno
print("python", len(os.urandom(4)), ssl.OPENSSL_VERSION[:7], open(%q).read())
try:
    open(%q).read()
    print("python: read it")
except OSError as e:
    print("python:", errno.errorcode[e.errno])'`, python, allowed, secret),
				"python 4 OpenSSL hello\npython: EPERM"},
			step{"go", `/bin/assay policy baseline | grep -q '/sys/fs/cgroup/' && echo go ok`, "go ok"})
		wantComms["node"], wantComms["python3"] = 1, 1
	}
	var script, want []string
	for _, s := range steps {
		script = append(script, s.cmd+` || echo "`+s.name+` failed: $?"`)
		want = append(want, s.want)
	}
	evfile := filepath.Join(t.TempDir(), "events.json")
	cmd := exec.Command(assaytest.Binary(t), "run", "--policy", pol, "--output", "json", "--events", evfile, "--",
		"/bin/busybox", "sh", "-c", strings.Join(script, "\n"))
	res := assaytest.RunCmd(t, cmd)
	stderr := res.StderrText()
	if got, want := strings.Join(res.Stdout, "\n"), strings.Join(want, "\n"); res.ExitCode != 0 || got != want {
		t.Errorf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", res.ExitCode, got, want, stderr)
	}

	data, err := os.ReadFile(evfile)
	if err != nil {
		t.Fatal(err)
	}
	report := false
	comms := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Type    string  `json:"type"`
			Kind    string  `json:"kind"`
			Verdict string  `json:"verdict"`
			RuleID  uint32  `json:"rule_id"`
			Comm    string  `json:"comm"`
			Op      string  `json:"op"`
			Ino     *uint64 `json:"ino"`
			Rules   []struct {
				ID        uint32 `json:"id"`
				Mechanism string `json:"mechanism"`
			} `json:"rules"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("events file line %q: %v", l, err)
		}
		switch {
		case ev.Type == "enforcement":
			for _, r := range ev.Rules {
				report = report || r.ID == 41 && r.Mechanism == "bpf-lsm"
			}
		case ev.Type != "event":
		case ev.Kind == "file" && ev.Verdict == "blocked" && ev.RuleID == 1000002 && ev.Op == "open" && ev.Ino != nil && *ev.Ino == st.Ino:
			c := ev.Comm
			if c != "node" && c != "python3" {
				c = "busybox" // cat: an applet of busybox sh
			}
			comms[c]++
		default:
			t.Errorf("an event the attacks did not cause (a gap in the runtime baseline?): %s", l)
		}
	}
	if !report {
		t.Errorf("the report does not name bpf-lsm for rule 41:\n%s", data)
	}
	if fmt.Sprint(comms) != fmt.Sprint(wantComms) {
		t.Errorf("refusals of the file outside every rule by comm: %v, want %v\n%s", comms, wantComms, data)
	}
}
