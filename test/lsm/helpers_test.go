//go:build vmtest

// Package lsm_test holds Assay's BPF-LSM tests. They need a kernel that runs BPF LSM
// programs (the host's refuses them), so they only run inside the QEMU guest that
// test/vm/run.sh boots: `make vmtest` (or `make vmtest VMTEST_RUN=regex`).
//
// The guest's /init mounts devtmpfs, proc, sysfs, securityfs, cgroup2 at
// /sys/fs/cgroup, bpffs at /sys/fs/bpf and tmpfs at /tmp and /run, loads the loop
// module, brings lo up and runs this binary as root with CI=true, ASSAY_VM=1,
// ASSAY_BIN=/bin/assay and ASSAY_EXT4_IMAGE=/images/ext4.img, from a directory
// holding a copy of testdata/.
package lsm_test

import (
	"errors"
	"fmt"
	"github.com/assaymcp/assay/internal/assaytest"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Getenv("ASSAY_VM") != "1" {
		fmt.Fprintln(os.Stderr, "FAIL: the test/lsm tests run only inside the vmtest guest (ASSAY_VM=1 is not set): run via `make vmtest`")
		os.Exit(1)
	}
	assaytest.Main(m)
}

// assayBin returns the path of the assay binary in the guest (ASSAY_BIN), failing the
// test if it is missing (the harness was run with VMTEST_NO_ASSAY=1 and no ./cmd/assay).
func assayBin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("ASSAY_BIN")
	if p == "" {
		t.Fatal("ASSAY_BIN is not set")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("assay binary: %v (was ./cmd/assay built?)", err)
	}
	return p
}

// statDev returns st_dev of path (user-space encoding: see unix.Major/unix.Minor).
func statDev(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Dev
}

// kernelDev converts a stat(2) st_dev to the kernel's inode->i_sb->s_dev encoding,
// MKDEV(major, minor) = major<<20 | minor. The two agree only for major 0, minor < 256.
func kernelDev(stDev uint64) uint32 {
	return unix.Major(stDev)<<20 | unix.Minor(stDev)
}

// mountHighMinorTmpfs mounts a tmpfs whose anonymous device minor is above 255 (so its
// st_dev and the kernel's s_dev differ) and returns its mount point. To get there it
// mounts filler tmpfs instances until the allocator hands out a minor > 255, then
// unmounts the fillers. The returned mount is unmounted when the test ends.
func mountHighMinorTmpfs(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	var fillers []string
	defer func() {
		for _, d := range fillers {
			if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount filler tmpfs %s: %v", d, err)
			}
		}
	}()
	for i := 0; i < 4096; i++ {
		dir := filepath.Join(base, fmt.Sprintf("t%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
			t.Fatalf("mount tmpfs %s: %v", dir, err)
		}
		dev := statDev(t, dir)
		if unix.Minor(dev) > 255 {
			t.Cleanup(func() { unmountT(t, dir) })
			return dir
		}
		fillers = append(fillers, dir)
	}
	t.Fatalf("no tmpfs with a minor above 255 after %d mounts", len(fillers))
	return ""
}

// mountExt4Loop attaches a private copy of the ASSAY_EXT4_IMAGE image (8 MiB ext4,
// holding hello.txt) to a free loop device (major 7), mounts it read-write and returns
// the mount point. Unmount and loop detach happen when the test ends.
func mountExt4Loop(t testing.TB) string {
	t.Helper()
	src := os.Getenv("ASSAY_EXT4_IMAGE")
	if src == "" {
		t.Fatal("ASSAY_EXT4_IMAGE is not set")
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	copyFile(t, src, img)

	dev := attachLoop(t, img)
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, "ext4", 0, ""); err != nil {
		t.Fatalf("mount -t ext4 %s %s: %v", dev, dir, err)
	}
	t.Cleanup(func() { unmountT(t, dir) })
	return dir
}

// attachLoop binds file to a free loop device and returns its path (/dev/loopN).
// The device is detached at cleanup (after cleanups registered later, such as unmounts).
func attachLoop(t testing.TB, file string) string {
	t.Helper()
	backing, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("%v (is the loop module loaded?)", err)
	}
	defer ctl.Close()

	// Another test may grab the same free device between GET_FREE and SET_FD: retry.
	for attempt := 0; attempt < 20; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		loop, err := openRetry(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
			loop.Close()
			if errors.Is(err, unix.EBUSY) {
				continue
			}
			t.Fatalf("LOOP_SET_FD %s: %v", path, err)
		}
		info := unix.LoopInfo64{}
		copy(info.File_name[:], file)
		if err := unix.IoctlLoopSetStatus64(int(loop.Fd()), &info); err != nil {
			_ = unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
			loop.Close()
			t.Fatalf("LOOP_SET_STATUS64 %s: %v", path, err)
		}
		t.Cleanup(func() {
			if err := unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
				t.Errorf("LOOP_CLR_FD %s: %v", path, err)
			}
			loop.Close()
		})
		return path
	}
	t.Fatal("no free loop device after 20 attempts")
	return ""
}

// openRetry opens a device node, waiting briefly for devtmpfs to create it.
func openRetry(path string) (*os.File, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func unmountT(t testing.TB, dir string) {
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
