// Package inotify tells when watched files or directories change or go
// away, from the kernel's inotify events: a caller re-checks its condition
// when told to, instead of polling it.
//
// Measured on Linux 6.18 (and asserted by this package's tests): rmdir of
// a cgroup2 directory delivers IN_DELETE to a watch on its parent, but no
// IN_DELETE_SELF to a watch on the directory itself (kernfs keeps the
// inode's link count; the VFS sends IN_DELETE_SELF only for an inode
// without links): watch the parent. A change of a cgroup's cgroup.events
// ("populated") delivers IN_MODIFY on that file; unlinking a pin in bpffs
// delivers IN_DELETE on its directory, and unmounting a bpffs delivers
// IN_UNMOUNT for every watch on it. What no event reports: a mount over a
// watched path (the watched inodes stay as they were); callers say so
// where it matters.
package inotify

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Masks for Add. IN_UNMOUNT and IN_IGNORED (the watch is gone, with the
// inode or its filesystem) are always delivered.
const (
	// Gone: the watched file or directory itself was removed or renamed.
	Gone = unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	// ChildGone: an entry of the watched directory was removed or renamed.
	ChildGone = unix.IN_DELETE | unix.IN_MOVED_FROM
	// Modified: the watched file was written (for cgroup.events: a change
	// of populated or frozen).
	Modified = unix.IN_MODIFY
)

// Watcher coalesces the events of its watches into one channel.
type Watcher struct {
	f    *os.File
	c    chan struct{}
	done chan struct{}
}

// New starts a watcher. Its channel holds one notification from the
// start: a caller checks its condition once after adding its watches, so
// that a change between its first look and Add is not missed.
func New() (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w (raise fs.inotify.max_user_instances if it is the limit)", err)
	}
	w := &Watcher{f: os.NewFile(uintptr(fd), "inotify"), c: make(chan struct{}, 1), done: make(chan struct{})}
	w.notify()
	go w.read()
	return w, nil
}

// C receives when any watch saw an event (several events may give one
// receive), or when reading events failed (the caller then looks at once
// rather than never).
func (w *Watcher) C() <-chan struct{} { return w.c }

// Add watches path for the events in mask. A path that does not exist is
// not an error: the channel is notified, so that the caller's check sees
// it gone.
func (w *Watcher) Add(path string, mask uint32) error {
	var err error
	if cerr := w.control(func(fd int) { _, err = unix.InotifyAddWatch(fd, path, mask) }); cerr != nil {
		return cerr
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		w.notify()
		return nil
	}
	if err != nil {
		return fmt.Errorf("inotify watch on %s: %w (raise fs.inotify.max_user_watches if it is the limit)", path, err)
	}
	return nil
}

// Close stops the watcher; C receives nothing more.
func (w *Watcher) Close() error {
	err := w.f.Close()
	<-w.done
	return err
}

func (w *Watcher) control(f func(fd int)) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

func (w *Watcher) notify() {
	select {
	case w.c <- struct{}{}:
	default: // one pending notification is enough
	}
}

// read turns every batch of events into a notification until Close. The
// events themselves are not needed: the callers' checks are the truth.
func (w *Watcher) read() {
	defer close(w.done)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if n > 0 || err != nil {
			w.notify()
		}
		if err != nil {
			return
		}
	}
}
