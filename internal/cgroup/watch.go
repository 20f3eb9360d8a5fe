package cgroup

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/assaymcp/assay/internal/inotify"
)

// Gone reports whether the scope's cgroup no longer exists at its path
// (removed, renamed, or replaced by another cgroup with the same path).
func (s Scope) Gone() bool {
	var st syscall.Stat_t
	return syscall.Stat(s.Path, &st) != nil || st.Ino != s.ID
}

// WatchGone has w notified when the scope's cgroup may be gone (then
// [Scope.Gone] says whether it is). kernfs delivers no IN_DELETE_SELF when
// a cgroup is removed (it leaves the directory's link count as it was, see
// package inotify): the removal is seen as IN_DELETE on the parent, whose
// other children's removals notify too (a Gone check each, no more).
func (s Scope) WatchGone(w *inotify.Watcher) error {
	if err := w.Add(s.Path, inotify.Gone); err != nil {
		return err
	}
	return w.Add(filepath.Dir(s.Path), inotify.ChildGone)
}

// Empty reports whether the cgroup at dir holds no process, in it or
// beneath it (its cgroup.events says "populated 0"), or is gone.
func Empty(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return true
	}
	return bytes.Contains(data, []byte("populated 0"))
}

// WaitEmpty waits until the cgroup at dir is [Empty], at most timeout, and
// reports whether it is. The kernel tells each change of "populated" as
// IN_MODIFY on cgroup.events: no polling.
func WaitEmpty(dir string, timeout time.Duration) (bool, error) {
	w, err := inotify.New()
	if err != nil {
		return Empty(dir), err
	}
	defer w.Close()
	if err := w.Add(filepath.Join(dir, "cgroup.events"), inotify.Modified); err != nil {
		return Empty(dir), err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-w.C(): // the first look, or a change
		case <-timer.C:
			return Empty(dir), nil
		}
		if Empty(dir) {
			return true, nil
		}
	}
}
