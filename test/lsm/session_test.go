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
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
)

// TestSessionSurvivesGC: the links are held for the session's whole life;
// garbage collection while enforcing, with every finalizer it queues run,
// must not detach anything.
func TestSessionSurvivesGC(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("inline", []byte("version: 1\nfiles:\n  deny:\n    - {path: "+secret+", id: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := cgroup.CreateLeaf("", "assay-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cgroup.Remove(cg); err != nil {
			t.Errorf("remove the cgroup: %v", err)
		}
	})
	sess, err := session.Start(session.Options{Policy: p, Scopes: []cgroup.Scope{cg}, Out: io.Discard, Format: events.Text})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := sess.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	runFinalizers(t)

	fd, err := cg.Open()
	if err != nil {
		t.Fatal(err)
	}
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

// runFinalizers collects garbage until the finalizer of an object dropped
// now has run, three times over: the finalizer goroutine runs finalizers
// one after the other, so by then those of everything unreachable before
// (a link or program the session had let go of) have run too.
func runFinalizers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for round := 0; round < 3; round++ {
		done := make(chan struct{})
		func() {
			sentinel := new([64]byte)
			runtime.SetFinalizer(sentinel, func(*[64]byte) { close(done) })
		}()
		for finalized := false; !finalized; {
			runtime.GC()
			select {
			case <-done:
				finalized = true
			case <-time.After(10 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatal("a finalizer did not run within 30s of collections")
				}
			}
		}
	}
}
