//go:build vmtest

package lsm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestLearnThenRun: in the guest (BPF LSM present), assay learn observes a
// busybox shell reading two files of a directory that also holds a
// subdirectory it never enters, and writes a policy naming those two files
// (the trace path names the opened files, from the kernel; no subtree rule
// spans an unentered subdirectory); under assay run with it the same reads
// pass and a file in the subdirectory is refused with a BLOCKED FILE event
// (one assay run for both: guest time is CI time).
func TestLearnThenRun(t *testing.T) {
	dir := t.TempDir()
	assaytest.PublicDir(t, dir) // the command runs as nobody
	for n, c := range map[string]string{"a.txt": "alpha", "b.txt": "beta", "other/c.txt": "gamma"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, n)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, n), c)
	}
	pol := filepath.Join(t.TempDir(), "learned.yaml")
	script := "cat " + filepath.Join(dir, "a.txt") + " " + filepath.Join(dir, "b.txt")
	lr := assaytest.RunCmd(t, exec.Command(assaytest.Binary(t), "learn", "--out", pol, "--", "/bin/busybox", "sh", "-c", script))
	if lr.ExitCode != 0 || strings.Join(lr.Stdout, "") != "alphabeta" {
		t.Fatalf("assay learn: exit %d stdout %q\n%s", lr.ExitCode, lr.Stdout, lr.StderrText())
	}
	text, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- {path: " + filepath.Join(dir, "a.txt") + ", access: r}", "- {path: " + filepath.Join(dir, "b.txt") + ", access: r}"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("learned policy lacks %q:\n%s", want, text)
		}
	}
	// One run under the policy: the learned reads pass, a third file of
	// the directory is refused.
	other := filepath.Join(dir, "other", "c.txt")
	rr := assaytest.RunCmd(t, exec.Command(assaytest.Binary(t), "run", "--policy", pol, "--", "/bin/busybox", "sh", "-c", script+"; cat "+other))
	// Exactly one refusal, the command's: assay's own shim starts inside
	// the sandbox before its exec and must not be refused anything there
	// (it was: the Go runtime's reads of its cgroup and the huge page
	// size, cilium/ebpf's init, the capability count).
	cmdBlocks, blocks := 0, 0
	for _, l := range rr.Stderr {
		if strings.Contains(l, "BLOCKED FILE:") {
			blocks++
			if strings.Contains(l, " comm=cat ") {
				cmdBlocks++
			}
		}
	}
	if rr.ExitCode == 0 || strings.Join(rr.Stdout, "") != "alphabeta" || cmdBlocks != 1 || blocks != 1 {
		t.Errorf("under the learned policy: exit %d stdout %q (want the two learned files, then a refusal)\n%s", rr.ExitCode, rr.Stdout, rr.StderrText())
	}
}
