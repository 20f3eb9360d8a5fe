//go:build vmtest

package lsm_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/monitor"
	"github.com/assaymcp/assay/internal/policy"
)

// TestSessionSurvivesGC: the links are held for the session's whole life;
// forced garbage collection while enforcing must not detach anything.
func TestSessionSurvivesGC(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cret"), 0o644)
	p, err := policy.Parse("inline", []byte("version: 1\nfiles:\n  deny:\n    - {path: "+secret+", id: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := cgroup.CreateLeaf("", "assay-test")
	if err != nil {
		t.Fatal(err)
	}
	defer cgroup.Remove(cg)
	sess, err := monitor.Start(monitor.Options{Policy: p, Scopes: []cgroup.Scope{cg}, Out: io.Discard, Format: events.Text})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Stop()
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	fd, _ := cg.Open()
	defer fd.Close()
	cmd := exec.Command("/bin/busybox", "cat", secret)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("cat in scope after GC: err=%v out=%q, want EPERM", err, out)
	}
	if _, err := os.ReadFile(secret); err != nil {
		t.Fatalf("outside scope: %v", err)
	}
}
