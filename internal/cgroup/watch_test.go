package cgroup_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/inotify"
	"github.com/assaymcp/assay/internal/testenv"
)

// TestWatchGone: removing a watched scope's cgroup notifies the watcher and
// Gone says so; removing another cgroup beside it notifies too (the parent
// is watched) but Gone stays false.
func TestWatchGone(t *testing.T) {
	testenv.Privileged(t)
	parent := newLeaf(t, "")
	s, err := cgroup.CreateLeaf(parent.Path, "")
	if err != nil {
		t.Fatal(err)
	}
	sibling, err := cgroup.CreateLeaf(parent.Path, "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := inotify.New()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := s.WatchGone(w); err != nil {
		t.Fatal(err)
	}
	<-w.C() // the first look
	if s.Gone() {
		t.Fatalf("%s: Gone before its removal", s.Path)
	}
	if err := unix.Rmdir(sibling.Path); err != nil {
		t.Fatal(err)
	}
	notified(t, w, "a sibling removed")
	if s.Gone() {
		t.Fatalf("%s: Gone after a sibling's removal", s.Path)
	}
	if err := unix.Rmdir(s.Path); err != nil {
		t.Fatal(err)
	}
	notified(t, w, "the scope removed")
	if !s.Gone() {
		t.Fatalf("%s: not Gone after its removal", s.Path)
	}
}

// TestWaitEmpty: WaitEmpty returns true once the cgroup's only process
// has exited, told by cgroup.events; with a live process and no time it
// returns false.
func TestWaitEmpty(t *testing.T) {
	testenv.Privileged(t)
	s := newLeaf(t, "")
	p := startSleep(t, nil)
	if err := s.AddPID(p.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if empty, err := cgroup.WaitEmpty(s.Path, 0); empty || err != nil {
		t.Fatalf("WaitEmpty with a process in the cgroup: %v, %v", empty, err)
	}
	done := make(chan struct{})
	var empty bool
	var werr error
	go func() {
		defer close(done)
		empty, werr = cgroup.WaitEmpty(s.Path, time.Hour)
	}()
	p.Process.Kill() // not reaped: an exited process leaves the cgroup at once
	<-done
	if !empty || werr != nil {
		t.Fatalf("WaitEmpty after the process exited: %v, %v", empty, werr)
	}
}

// notified waits for a notification of w; the bound is a failure bound,
// not a latency requirement.
func notified(t *testing.T, w *inotify.Watcher, what string) {
	t.Helper()
	select {
	case <-w.C():
	case <-time.After(time.Minute):
		t.Fatalf("%s: no notification", what)
	}
}
