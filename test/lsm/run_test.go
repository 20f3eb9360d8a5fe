//go:build vmtest

package lsm_test

import (
	"fmt"
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
