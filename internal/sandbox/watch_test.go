package sandbox

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLinkFilesOwnTheirDescriptors: the files handed to the watchdog own
// duplicates, so closing them (as the garbage collector does with an
// unreachable *os.File) leaves the instance's link descriptors open. The
// files used to wrap the instance's own descriptors: once the watchdog was
// stopped and its files collected, Detach failed with EBADF (seen in the
// arm64 guest, where runs are long enough for a forced GC) or closed
// whatever had reused the numbers.
func TestLinkFilesOwnTheirDescriptors(t *testing.T) {
	r, w, err := os.Pipe() // stand-ins for two link descriptors
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	orig := []int{int(r.Fd()), int(w.Fd())}
	files, err := linkFiles(orig)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(orig) {
		t.Fatalf("%d files for %d descriptors", len(files), len(orig))
	}
	for i, f := range files {
		fd := int(f.Fd())
		if fd == orig[i] {
			t.Errorf("file %d wraps the original descriptor %d, not a duplicate", i, fd)
		}
		var a, b unix.Stat_t
		if err := unix.Fstat(fd, &a); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fstat(orig[i], &b); err != nil {
			t.Fatal(err)
		}
		if a.Ino != b.Ino || a.Dev != b.Dev {
			t.Errorf("file %d (fd %d) is not the same open file as descriptor %d", i, fd, orig[i])
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("duplicate %d: flags %#x, %v: want close-on-exec (exec.Cmd sets up the child's own)", fd, flags, err)
		}
	}
	closeFiles(files)
	for _, fd := range orig {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			t.Errorf("descriptor %d closed with the watchdog's files: %v", fd, err)
		}
	}
}
