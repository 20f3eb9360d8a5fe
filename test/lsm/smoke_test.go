//go:build vmtest

package lsm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Smoke tests of the guest itself: if these fail, the LSM tests' results mean nothing.

func TestBPFInLSMList(t *testing.T) {
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		t.Fatalf("%v (securityfs not mounted?)", err)
	}
	list := strings.TrimSpace(string(b))
	t.Logf("LSMs: %s", list)
	for _, l := range strings.Split(list, ",") {
		if l == "bpf" {
			return
		}
	}
	t.Fatalf(`"bpf" is not an active LSM (%s): boot with lsm=...,bpf`, list)
}

func TestLoopExt4Device(t *testing.T) {
	dir := mountExt4Loop(t)

	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Type != unix.EXT4_SUPER_MAGIC {
		t.Fatalf("%s: filesystem magic %#x, want ext4 %#x", dir, sfs.Type, unix.EXT4_SUPER_MAGIC)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "hello.txt")); err != nil || !strings.Contains(string(b), "assay") {
		t.Errorf("hello.txt from the image: %q, %v", b, err)
	}

	file := filepath.Join(dir, "created")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := statDev(t, file)
	major, minor := unix.Major(dev), unix.Minor(dev)
	t.Logf("%s: st_dev=%#x (%d:%d), kernel s_dev=%#x", file, dev, major, minor, kernelDev(dev))
	if major != 7 {
		t.Fatalf("st_dev major %d, want 7 (loop)", major)
	}
	if got := statDev(t, dir); got != dev {
		t.Errorf("mount root st_dev %#x != file st_dev %#x", got, dev)
	}
}

func TestTmpfsMinorAbove255(t *testing.T) {
	dir := mountHighMinorTmpfs(t)

	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s: filesystem magic %#x, want tmpfs %#x", dir, sfs.Type, unix.TMPFS_MAGIC)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := statDev(t, file)
	major, minor := unix.Major(dev), unix.Minor(dev)
	t.Logf("%s: st_dev=%#x (%d:%d), kernel s_dev=%#x", file, dev, major, minor, kernelDev(dev))
	if major != 0 || minor <= 255 {
		t.Fatalf("st_dev %d:%d, want major 0 and minor > 255", major, minor)
	}
	if uint64(kernelDev(dev)) == dev {
		t.Errorf("st_dev %#x equals kernel s_dev: the encodings should differ above minor 255", dev)
	}
}
