package kernel

import (
	"os"
	"testing"

	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestIdentify: the iterator reports, for descriptors of this process, the
// inode the kernel holds: on ext4/tmpfs the same numbers stat(2) gives
// (converted to the kernel's device encoding).
func TestIdentify(t *testing.T) {
	testenv.Privileged(t)
	dir := t.TempDir()
	f := dir + "/f"
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, p := range []string{f, dir, "/"} {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		fds = append(fds, fd)
	}
	ids, err := Identify(fds)
	if err != nil {
		t.Fatal(err)
	}
	for i, fd := range fds {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		id := ids[i]
		t.Logf("fd %d: %+v", fd, id)
		if !id.OK || id.Ino != st.Ino || id.Mode != uint16(st.Mode) || id.FSType == "" {
			t.Errorf("fd %d: %+v, stat ino %d mode %o", fd, id, st.Ino, st.Mode)
		}
		if id.Magic != MagicBtrfs && id.Dev != unix.Major(st.Dev)<<20|unix.Minor(st.Dev) {
			t.Errorf("fd %d: dev %#x, stat dev %#x", fd, id.Dev, st.Dev)
		}
	}
}
