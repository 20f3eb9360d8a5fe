package e2e_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/kernel"
)

const netPolicy = "version: 1\nnetwork:\n  deny_ports: [{port: 22, id: 40}]\n"

// TestNoScope: a monitor without --cgroup, --pid or --all refuses to start
// (usage error) and attaches nothing, not even at the cgroup2 root.
func TestNoScope(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	before := assaytest.CgroupPrograms(t, root)
	res := assaytest.Run(t, "monitor", "--policy", writePolicy(t, netPolicy))
	if res.ExitCode != 2 {
		t.Errorf("exit status %d, want 2 (usage)", res.ExitCode)
	}
	if len(res.Stderr) != 1 || !strings.Contains(res.Stderr[0], "no scope") {
		t.Errorf("want one line saying \"no scope\", got:\n%s", res.StderrText())
	}
	if len(res.Stdout) != 0 {
		t.Errorf("stdout: %q", res.Stdout)
	}
	if after := assaytest.CgroupPrograms(t, root); !reflect.DeepEqual(before, after) {
		t.Errorf("programs at the cgroup2 root changed: %v -> %v", before, after)
	}
}

// TestNotRoot: run as nobody, the monitor fails with one line saying it
// needs root or capabilities, and attaches nothing.
func TestNotRoot(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	// A directory nobody can read, holding a copy of the binary and the
	// policy: the test's own temporary directories are private to root.
	dir, err := os.MkdirTemp("", "assay-e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "assay")
	// A hard link where possible: a copy can be briefly ETXTBSY (RunCmd
	// retries that) and must be made world-executable.
	if err := os.Link(assaytest.Binary(t), bin); err != nil {
		copyFile(t, assaytest.Binary(t), bin, 0o755) // another filesystem
		if err := os.Chmod(bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(netPolicy), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "monitor", "--policy", pol, "--cgroup", cg.Path)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	res := assaytest.RunCmd(t, cmd)
	if res.ExitCode != 1 {
		t.Errorf("exit status %d, want 1", res.ExitCode)
	}
	if len(res.Stderr) != 1 || !strings.Contains(res.Stderr[0], "root") || !strings.Contains(res.Stderr[0], "CAP_BPF") {
		t.Errorf("want one line naming root and the capabilities, got:\n%s", res.StderrText())
	}
	if len(res.Stdout) != 0 {
		t.Errorf("stdout: %q", res.Stdout)
	}
	assaytest.RequireDetached(t, cg)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyCheck: `assay policy check` lists a valid policy's rules with
// their ids (assigned and explicit) and exits 0; an invalid policy exits 1
// with FILE:LINE in its one-line message.
func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		pol := writePolicy(t, `version: 1
mode: audit
network:
  deny_ports: [{port: 22, id: 40}, 23]
  allow_cidrs: [10.0.0.0/8]
  deny_cidrs: [{cidr: 169.254.169.254/32, id: 41}]
`)
		res := assaytest.Run(t, "policy", "check", pol)
		if res.ExitCode != 0 {
			t.Fatalf("exit status %d; stderr:\n%s", res.ExitCode, res.StderrText())
		}
		if len(res.Stdout) == 0 || !regexp.MustCompile(`^`+regexp.QuoteMeta(pol)+`: valid \(version 1, mode audit, digest sha256:[0-9a-f]{64}\)$`).MatchString(res.Stdout[0]) {
			t.Errorf("first line: %q", res.Stdout)
		}
		// Id-less rules get the smallest free ids, deny_ports first.
		rows := [][]string{
			{"ID", "KIND", "RULE", "LINE"},
			{"1", "deny_port", "23", "4"},
			{"2", "allow_cidr", "10.0.0.0/8", "5"},
			{"40", "deny_port", "22", "4"},
			{"41", "deny_cidr", "169.254.169.254/32", "6"},
			{"1000000", "not_in_allow_cidrs", "destination outside allow_cidrs", "-"},
		}
		var got [][]string
		for _, l := range res.Stdout[1:] {
			got = append(got, splitColumns(l))
		}
		if !reflect.DeepEqual(got, rows) {
			t.Errorf("rule table:\n%s\nwant rows %q", strings.Join(res.Stdout[1:], "\n"), rows)
		}
		if len(res.Stderr) != 0 {
			t.Errorf("stderr: %q", res.Stderr)
		}
	})
	for _, c := range []struct {
		name, text string
		line       int
		field      string
	}{
		{"port out of range", "version: 1\nnetwork:\n  deny_ports:\n    - 22\n    - 70000\n", 5, "network.deny_ports[1]"},
		{"unknown field", "version: 1\nnetwork:\n  deny_port: [22]\n", 3, "network.deny_port"},
		{"bad YAML", "version: 1\nnetwork: [\n", 2, "invalid YAML"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pol := writePolicy(t, "%s", c.text)
			res := assaytest.Run(t, "policy", "check", pol)
			if res.ExitCode != 1 {
				t.Errorf("exit status %d, want 1", res.ExitCode)
			}
			prefix := fmt.Sprintf("assay: %s:%d: %s", pol, c.line, c.field)
			if len(res.Stderr) != 1 || !strings.HasPrefix(res.Stderr[0], prefix) {
				t.Errorf("want one line starting %q, got:\n%s", prefix, res.StderrText())
			}
			if len(res.Stdout) != 0 {
				t.Errorf("stdout: %q", res.Stdout)
			}
		})
	}
}

// splitColumns splits a tabwriter row on runs of two or more spaces (the
// RULE column may hold single spaces).
func splitColumns(line string) []string {
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
}

// TestFileRulesWithoutLSM: on this host BPF LSM programs cannot run, so a
// policy with file rules makes the monitor fail before attaching anything,
// with a message naming BPF LSM and the errno.
func TestFileRulesWithoutLSM(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	if err := kernel.ProbeLSM(); err == nil {
		t.Skip("this kernel runs BPF LSM programs: a monitor with file rules enforces them (test/lsm TestExactRule, TestDirectoryRule)")
	}
	cg := assaytest.NewCgroup(t)
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [22]\nfiles:\n  deny:\n    - {path: %s, id: 7}\n", secret)
	res := assaytest.Run(t, "monitor", "--policy", pol, "--cgroup", cg.Path)
	if res.ExitCode == 0 {
		t.Errorf("exit status 0")
	}
	if len(res.Stderr) != 1 || !strings.Contains(res.Stderr[0], "BPF LSM") || !strings.Contains(res.Stderr[0], "EPERM") {
		t.Errorf("want one line naming BPF LSM and EPERM, got:\n%s", res.StderrText())
	}
	if hasPrefix(res.Stderr, "assay: enforcing") {
		t.Errorf("the monitor said it was enforcing")
	}
	assaytest.RequireDetached(t, cg)
}

// TestPIDScope: --pid judges the cgroup the process is in: a sleep moved
// into a fresh cgroup scopes the monitor there, and a probe in that cgroup
// is blocked while one outside is not.
func TestPIDScope(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	if err := cg.AddPID(sleep.Process.Pid); err != nil {
		t.Fatal(err)
	}
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 40}]\n", l.Port())
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--pid", strconv.Itoa(sleep.Process.Pid), "--output", "json")
	assaytest.RequireProgramCount(t, cg, 1)

	r := assaytest.Probe(t, &cg, "connect", "tcp4", l.String())
	requireEPERM(t, "in the --pid cgroup", r)
	m.WaitEvents(1, eventTimeout)
	out := assaytest.Probe(t, nil, "connect", "tcp4", l.String())
	requireOK(t, "outside", out)
	requireAccepted(t, l, out)
	res := m.Stop()

	if !strings.Contains(res.StderrText(), fmt.Sprintf("on cgroup %s (id %d,", cg.Path, cg.ID)) {
		t.Errorf("readiness line does not name %s:\n%s", cg.Path, res.StderrText())
	}
	checkAccounting(t, res, 1)
	if len(res.Events) == 1 {
		checkEvent(t, res.Events[0], netEvent{"connect", "blocked", 40, "inet", "tcp", "127.0.0.1", l.Port(), false}.json(cg, r))
	}
	assaytest.RequireDetached(t, cg)
}
