package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

// testParent creates a private parent cgroup, removed when the test ends.
func testParent(t *testing.T) cgroup.Scope {
	t.Helper()
	testenv.Privileged(t)
	p, err := cgroup.CreateLeaf("", "assaytest-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cgroup.Remove(p); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

func TestIdentity(t *testing.T) {
	id, err := selfIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if id.pid != os.Getpid() || id.start == 0 || id.pidns == 0 || !id.alive() {
		t.Errorf("selfIdentity = %+v", id)
	}
	name := id.prefix() + "-0123456789abcdef"
	if !leafName.MatchString(name) {
		t.Errorf("%q does not match the stale-sweep pattern", name)
	}
	for _, other := range []string{"assay-0123456789abcdef", "assay-doctor-0123456789abcdef", "assay-1-2-3-0123456789abcdeg", "xassay-1-2-3-0123456789abcdef"} {
		if leafName.MatchString(other) {
			t.Errorf("%q matches the stale-sweep pattern", other)
		}
	}
	// Same pid, other start time: the creator is gone.
	if (identity{pid: id.pid, start: id.start + 1, pidns: id.pidns}).alive() {
		t.Error("a different start time counts as alive")
	}
}

func TestSweepStale(t *testing.T) {
	parent := testParent(t)
	self, err := selfIdentity()
	if err != nil {
		t.Fatal(err)
	}

	// A creator that is gone: a process that ran and was reaped.
	dead := exec.Command("/bin/true")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	deadStart, err := startTime(dead.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dead.Wait()
	gone := identity{pid: dead.Process.Pid, start: deadStart, pidns: self.pidns}

	mk := func(name string) cgroup.Scope {
		t.Helper()
		if err := os.Mkdir(filepath.Join(parent.Path, name), 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := cgroup.Resolve(filepath.Join(parent.Path, name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	stale := mk(gone.prefix() + "-00000000000000aa")
	live := mk(self.prefix() + "-00000000000000bb")
	otherNS := mk(fmt.Sprintf("assay-%d-%d-%d-00000000000000cc", gone.pid, gone.start, self.pidns+1))
	foreign := mk("assay-00000000000000dd")
	for _, s := range []cgroup.Scope{live, otherNS, foreign} {
		t.Cleanup(func() { cgroup.Remove(s) })
	}

	// A leftover process in the stale cgroup, and in a child cgroup of it.
	sub := filepath.Join(stale.Path, "child")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	var leftovers []*exec.Cmd
	for _, dir := range []string{stale.Path, sub} {
		f, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command("sleep", "60")
		c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		err = c.Start()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		leftovers = append(leftovers, c)
	}

	found, err := SweepStale(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Path != stale.Path || found[0].Creator != gone.pid || found[0].Err != nil || len(found[0].PIDs) != 2 {
		t.Fatalf("SweepStale = %+v, want only %s with 2 pids", found, stale.Path)
	}
	if _, err := os.Stat(stale.Path); !os.IsNotExist(err) {
		t.Errorf("stale cgroup still there: %v", err)
	}
	for _, c := range leftovers {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
			if ws := c.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
				t.Errorf("leftover ended with %v, want SIGKILL", c.ProcessState)
			}
		case <-time.After(5 * time.Second):
			t.Error("leftover process not killed")
		}
	}
	for _, s := range []cgroup.Scope{live, otherNS, foreign} {
		if _, err := os.Stat(s.Path); err != nil {
			t.Errorf("%s was touched: %v", s.Path, err)
		}
	}
}
