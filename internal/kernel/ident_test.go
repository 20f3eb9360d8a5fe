package kernel

import (
	"fmt"
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

// TestIdentifyProc: procfs keys (bpf/file_rules.h) are the same in every
// procfs instance (ProcKeyDev): registered entries keep their inode
// numbers, the reading process's own /proc/PID is ProcSelfIno, and another
// process's directory or a sysctl file has no key.
func TestIdentifyProc(t *testing.T) {
	testenv.Privileged(t)
	paths := []string{"/proc", "/proc/cpuinfo", "/proc/sys", fmt.Sprintf("/proc/%d", os.Getpid()), fmt.Sprintf("/proc/%d/status", os.Getpid()), "/proc/1", "/proc/sys/kernel/cap_last_cap"}
	var fds []int
	for _, p := range paths {
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
	for i, p := range paths {
		id := ids[i]
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v (stat ino %d)", p, id, st.Ino)
		if id.Magic != MagicProc {
			t.Errorf("%s: magic %#x", p, id.Magic)
			continue
		}
		switch i {
		case 0, 1, 2:
			if !id.OK || id.Dev != ProcKeyDev || id.Ino != st.Ino {
				t.Errorf("%s: %+v, want key (%#x, %d)", p, id, ProcKeyDev, st.Ino)
			}
		case 3, 4:
			if !id.OK || id.Dev != ProcKeyDev || id.Ino != ProcSelfIno {
				t.Errorf("%s: %+v, want the own-process key (%#x, %#x)", p, id, ProcKeyDev, ProcSelfIno)
			}
		default:
			if id.OK {
				t.Errorf("%s: %+v, want no key", p, id)
			}
		}
	}
}
