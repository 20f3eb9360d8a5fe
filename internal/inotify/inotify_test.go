package inotify_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/inotify"
	"github.com/assaymcp/assay/internal/testenv"
)

// noEvent bounds the wait for an event the kernel must deliver: a failure
// bound, not a latency requirement (the events arrive at once).
const noEvent = time.Minute

func watcher(t *testing.T) *inotify.Watcher {
	t.Helper()
	w, err := inotify.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	notified(t, w, "the first check") // New's own notification
	return w
}

// notified waits for a notification.
func notified(t *testing.T, w *inotify.Watcher, what string) {
	t.Helper()
	select {
	case <-w.C():
	case <-time.After(noEvent):
		t.Fatalf("%s: no inotify event", what)
	}
}

// quiet asserts that no notification is pending.
func quiet(t *testing.T, w *inotify.Watcher, what string) {
	t.Helper()
	select {
	case <-w.C():
		t.Fatalf("%s: a notification with nothing changed", what)
	default:
	}
}

// TestCgroupRemoved: rmdir of a cgroup2 directory is reported to a
// ChildGone watch on its parent (IN_DELETE).
func TestCgroupRemoved(t *testing.T) {
	testenv.Privileged(t)
	parent := assaytest.NewCgroup(t)
	s, err := cgroup.CreateLeaf(parent.Path, "child")
	if err != nil {
		t.Fatal(err)
	}
	w := watcher(t)
	if err := w.Add(parent.Path, inotify.ChildGone); err != nil {
		t.Fatal(err)
	}
	quiet(t, w, "cgroup watched")
	if err := unix.Rmdir(s.Path); err != nil {
		t.Fatal(err)
	}
	notified(t, w, "rmdir of the cgroup")
}

// TestCgroupNoDeleteSelf documents what kernfs does not deliver: rmdir of
// a cgroup2 directory gives no IN_DELETE_SELF to a watch on the directory
// itself (kernfs leaves the inode's link count as it was, and the VFS
// sends IN_DELETE_SELF only for an inode without links). Watch the parent.
func TestCgroupNoDeleteSelf(t *testing.T) {
	testenv.Privileged(t)
	s := assaytest.NewCgroup(t)
	w := watcher(t)
	if err := w.Add(s.Path, inotify.Gone); err != nil {
		t.Fatal(err)
	}
	// A second watch, on a child of the same parent that is removed
	// after it: its notification orders the check below after the
	// kernel's handling of the first rmdir.
	mnt, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	w2 := watcher(t)
	if err := w2.Add(mnt, inotify.ChildGone); err != nil {
		t.Fatal(err)
	}
	if err := unix.Rmdir(s.Path); err != nil {
		t.Fatal(err)
	}
	notified(t, w2, "rmdir seen on the parent")
	select {
	case <-w.C():
		t.Log("this kernel delivers IN_DELETE_SELF for cgroup2 directories (it did not on 6.18); the parent watch is still needed for older ones")
	default:
	}
}

// TestCgroupPopulated: a process entering and leaving a cgroup changes
// its cgroup.events ("populated 1", "populated 0"): each is reported to a
// Modified watch on that file.
func TestCgroupPopulated(t *testing.T) {
	testenv.Privileged(t)
	s := assaytest.NewCgroup(t)
	w := watcher(t)
	events := filepath.Join(s.Path, "cgroup.events")
	if err := w.Add(events, inotify.Modified); err != nil {
		t.Fatal(err)
	}
	quiet(t, w, "empty cgroup watched")
	cmd := exec.Command(testenv.LookPath(t, "cat", "a process that waits for its stdin"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	if err := s.AddPID(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	notified(t, w, "a process moved into the cgroup")
	if data, _ := os.ReadFile(events); !containsLine(data, "populated 1") {
		t.Fatalf("cgroup.events after the move:\n%s", data)
	}
	in.Close()
	cmd.Wait()
	for {
		data, err := os.ReadFile(events)
		if err != nil {
			t.Fatal(err)
		}
		if containsLine(data, "populated 0") {
			break
		}
		notified(t, w, "the cgroup's only process exited")
	}
}

func containsLine(data []byte, line string) bool {
	return slices.Contains(strings.Split(string(data), "\n"), line)
}

// TestBPFFS: on a bpffs of the test's own, unlinking a pin is reported to
// a ChildGone watch on its directory, and unmounting the bpffs to every
// watch on it (IN_UNMOUNT).
func TestBPFFS(t *testing.T) {
	testenv.Privileged(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	inst := filepath.Join(dir, "inst")
	if err := os.Mkdir(inst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.Pin(filepath.Join(inst, name)); err != nil {
			t.Fatal(err)
		}
	}
	w := watcher(t)
	if err := w.Add(inst, inotify.Gone|inotify.ChildGone); err != nil {
		t.Fatal(err)
	}
	quiet(t, w, "pins watched")
	if err := os.Remove(filepath.Join(inst, "a")); err != nil {
		t.Fatal(err)
	}
	notified(t, w, "a pin unlinked")
	quiet(t, w, "after the unlink")
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	notified(t, w, "the bpffs unmounted")
}

// TestMissing: a path that does not exist is no error; the caller is
// notified (its check then sees the path gone).
func TestMissing(t *testing.T) {
	w := watcher(t)
	if err := w.Add(filepath.Join(t.TempDir(), "nothing"), inotify.Gone); err != nil {
		t.Fatal(err)
	}
	notified(t, w, "a watch on a missing path")
}

// TestClose: Close returns while the reader waits, and nothing more is
// notified.
func TestClose(t *testing.T) {
	w, err := inotify.New()
	if err != nil {
		t.Fatal(err)
	}
	<-w.C()
	dir := t.TempDir()
	if err := w.Add(dir, inotify.Gone); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(dir)
	quiet(t, w, "after Close")
}
