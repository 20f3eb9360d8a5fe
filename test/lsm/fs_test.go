//go:build vmtest

package lsm_test

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/assaymcp/assay/internal/assaytest"
	"golang.org/x/sys/unix"
)

// The filesystem matrix: on each filesystem the guest offers (ext4 and xfs
// on loop devices, btrfs with a subvolume and a snapshot, tmpfs, overlayfs
// in each of its cases) and through a bind mount of it, an exact rule and a
// directory rule block, each with its event and rule id, and a sibling file
// opens. Identities are read from the kernel (kernel.Identify), so the test
// does not say which device numbers to expect: it checks the rule ids.

// check is one probe of a matrix case: open path for reading in the scope;
// rule 0 means it must open, otherwise it must fail with EPERM and produce
// exactly one event with this rule id.
type check struct {
	what string
	path string
	rule uint32
	op   string // the event's op ("open" when empty)
	// action and args replace the default "open PATH r" probe.
	action string
	args   []string
	// files are passed to the probe as its descriptors 3, 4, ...
	files []*os.File
}

// runChecks starts a monitor with policy on a fresh cgroup, runs the checks
// and verifies every expected refusal and its event. before, when set, runs
// after the monitor started and before the probes (out of scope).
func runChecks(t *testing.T, policy string, before func(), checks []check) {
	t.Helper()
	cg := assaytest.NewCgroup(t)
	m := assaytest.StartMonitor(t, "monitor", "--policy", writePolicy(t, policy), "--cgroup", cg.Path, "--output", "json")
	if before != nil {
		before()
	}
	type done struct {
		check
		r assaytest.ProbeResult
	}
	var results []done
	blocked := 0
	for _, c := range checks {
		action, args := "open", []string{c.path, "r"}
		if c.action != "" {
			action, args = c.action, c.args
		}
		r := assaytest.ProbeWith(t, &cg, c.files, action, args...)
		if c.rule == 0 {
			wantOpened(t, r, c.what)
		} else {
			wantBlocked(t, r, c.what)
			blocked++
		}
		results = append(results, done{c, r})
	}
	m.WaitEvents(blocked, eventTimeout)
	res := m.Stop()
	for _, d := range results {
		evs := fileEvents(res, d.r.PID)
		if d.rule == 0 {
			if len(evs) != 0 {
				t.Errorf("%s: opened, yet events %+v", d.what, evs)
			}
			continue
		}
		op := d.op
		if op == "" {
			op = "open"
		}
		if len(evs) != 1 || evs[0].RuleID != d.rule || evs[0].Op != op || evs[0].Verdict != "blocked" {
			t.Errorf("%s: events %+v, want one blocked %s under rule %d", d.what, evs, op, d.rule)
		}
	}
	if len(res.Events) != blocked {
		t.Errorf("%d events, want %d:\n%s", len(res.Events), blocked, strings.Join(res.EventLines, "\n"))
	}
}

// layout writes, under dir: secret (exact rule), vault/inner (directory
// rule on vault/) and open.txt (no rule).
func layout(t *testing.T, dir string) {
	writeFile(t, filepath.Join(dir, "secret"), "s3cret")
	writeFile(t, filepath.Join(dir, "vault", "inner"), "inner")
	writeFile(t, filepath.Join(dir, "open.txt"), "ok")
}

// matrix checks an exact rule (7) and a directory rule (8) on dir, directly
// and through a bind mount of dir.
func matrix(t *testing.T, dir string) {
	t.Helper()
	layout(t, dir)
	bind := filepath.Join(t.TempDir(), "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s: %v", dir, err)
	}
	t.Cleanup(func() { unmountT(t, bind) })
	pol := fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s/secret, id: 7}\n    - {path: %s/vault/, id: 8}\n", dir, dir)
	runChecks(t, pol, nil, []check{
		{what: "exact rule", path: dir + "/secret", rule: 7},
		{what: "directory rule", path: dir + "/vault/inner", rule: 8},
		{what: "no rule", path: dir + "/open.txt"},
		{what: "exact rule through a bind mount", path: bind + "/secret", rule: 7},
		{what: "directory rule through a bind mount", path: bind + "/vault/inner", rule: 8},
		{what: "no rule through a bind mount", path: bind + "/open.txt"},
	})
}

func TestFSExt4(t *testing.T) { matrix(t, mountExt4Loop(t)) }
func TestFSTmpfs(t *testing.T) {
	dir := t.TempDir()
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is not on tmpfs (%#x, %v)", dir, sfs.Type, err)
	}
	matrix(t, dir)
}
func TestFSXFS(t *testing.T) { matrix(t, mountImage(t, "ASSAY_XFS_IMAGE", "xfs")) }
func TestFSBtrfs(t *testing.T) {
	dir := mountImage(t, "ASSAY_BTRFS_IMAGE", "btrfs")
	if b, err := os.ReadFile(filepath.Join(dir, "hello.txt")); err != nil || !strings.Contains(string(b), "vmtest") {
		t.Errorf("the image built with mkfs.btrfs -r lacks hello.txt: %q %v", b, err)
	}
	matrix(t, dir)
}

// TestFSBtrfsSubvolumes: inode numbers are per subvolume on btrfs, so the
// key carries the subvolume's device. A rule on a file in a snapshot
// (which shares the original's inode number) and a directory rule on a
// subvolume (whose root is inode 256, like every subvolume's) hold without
// spilling over to the twin in the other subvolume or to the top level.
func TestFSBtrfsSubvolumes(t *testing.T) {
	dir := mountImage(t, "ASSAY_BTRFS_IMAGE", "btrfs")
	sub := filepath.Join(dir, "sub")
	btrfsSubvolCreate(t, dir, "sub")
	writeFile(t, filepath.Join(sub, "s"), "sub secret")
	writeFile(t, filepath.Join(sub, "other"), "other")
	btrfsSnapshot(t, sub, dir, "snap")
	snap := filepath.Join(dir, "snap")
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(sub, "s"), &a)
	unix.Stat(filepath.Join(snap, "s"), &b)
	if a.Ino != b.Ino || a.Dev == b.Dev {
		t.Fatalf("snapshot twin: ino %d/%d dev %#x/%#x; want the same ino on another device", a.Ino, b.Ino, a.Dev, b.Dev)
	}
	pol := fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s/, id: 13}\n    - {path: %s/s, id: 12}\n", sub, snap)
	runChecks(t, pol, nil, []check{
		{what: "file in a subvolume under a directory rule on the subvolume", path: sub + "/s", rule: 13},
		{what: "another file in that subvolume", path: sub + "/other", rule: 13},
		{what: "exact rule on a snapshot's file", path: snap + "/s", rule: 12},
		{what: "the snapshot's twin of a file under the subvolume rule", path: snap + "/other"},
		{what: "the top level (root inode 256 like the subvolume's)", path: dir + "/hello.txt"},
	})
}

// TestFSOverlay: rules on an overlay (the root filesystem of containers)
// are keyed on the overlay's own inode; each case of where the file lives.
func TestFSOverlay(t *testing.T) {
	base := t.TempDir()
	lower, upper, work, merged := base+"/lower", base+"/upper", base+"/work", base+"/merged"
	for _, d := range []string{upper, work, merged} {
		os.MkdirAll(d, 0o755)
	}
	writeFile(t, lower+"/lfile", "lower")                  // exact rule, only in the lower layer
	writeFile(t, lower+"/cfile", "copied")                 // copied up before the rule
	writeFile(t, lower+"/late", "late")                    // copied up while the monitor runs
	writeFile(t, lower+"/wfile", "whiteout")               // removed, then re-created
	writeFile(t, lower+"/ldir/inner", "dir")               // directory rule on a lower-only directory
	writeFile(t, lower+"/layer-rule", "rule on the layer") // rule on the lower layer's own path
	writeFile(t, lower+"/open.txt", "ok")
	if err := unix.Mount("overlay", merged, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unmountT(t, merged) })
	appendFile(t, merged+"/cfile", "+")
	if _, err := os.Stat(upper + "/cfile"); err != nil {
		t.Fatalf("cfile was not copied up: %v", err)
	}
	if err := os.Remove(merged + "/wfile"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, merged+"/wfile", "re-created")
	writeFile(t, merged+"/ufile", "upper") // only in the upper layer
	writeFile(t, merged+"/udir/inner", "upper dir")
	bind := filepath.Join(t.TempDir(), "bind")
	os.Mkdir(bind, 0o755)
	if err := unix.Mount(merged, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountT(t, bind) })

	pol := fmt.Sprintf(`version: 1
files:
  deny:
    - {path: %[1]s/lfile, id: 21}
    - {path: %[1]s/cfile, id: 22}
    - {path: %[1]s/wfile, id: 23}
    - {path: %[1]s/ldir/, id: 24}
    - {path: %[1]s/ufile, id: 25}
    - {path: %[1]s/late, id: 26}
    - {path: %[1]s/udir/, id: 27}
    - {path: %[2]s/layer-rule, id: 28}
`, merged, lower)
	runChecks(t, pol, func() {
		// Out of scope: copy "late" up, then evict the overlay's inodes,
		// so the in-scope open meets a fresh overlay inode over the upper
		// file.
		appendFile(t, merged+"/late", "+")
		dropCaches(t)
	}, []check{
		{what: "lower-layer file", path: merged + "/lfile", rule: 21},
		{what: "file copied up before the start", path: merged + "/cfile", rule: 22},
		{what: "file copied up (and evicted) after the start", path: merged + "/late", rule: 26},
		{what: "whited out and re-created file", path: merged + "/wfile", rule: 23},
		{what: "directory rule, lower-only directory", path: merged + "/ldir/inner", rule: 24},
		{what: "upper-only file", path: merged + "/ufile", rule: 25},
		{what: "directory rule, upper-only directory", path: merged + "/udir/inner", rule: 27},
		{what: "rule on the lower layer's path, opened through the overlay", path: merged + "/layer-rule", rule: 28},
		{what: "no rule", path: merged + "/open.txt"},
		{what: "lower-layer file through a bind mount of the overlay", path: bind + "/lfile", rule: 21},
		{what: "directory rule through a bind mount of the overlay", path: bind + "/ldir/inner", rule: 24},
		{what: "no rule through a bind mount", path: bind + "/open.txt"},
	})
}

// TestDisconnectedDentry: a file opened by handle after its dentry left the
// cache has a disconnected dentry; it does not escape a directory rule (it
// is refused under the reserved id 1000003), while an exact rule still
// names it. The monitor judges it (no seccomp is involved: probes run
// under `assay monitor`, not `assay run`).
func TestDisconnectedDentry(t *testing.T) {
	dir := mountExt4Loop(t)
	layout(t, dir)
	typI, hI, err := assaytest.FileHandle(dir + "/vault/inner")
	if err != nil {
		t.Fatalf("name_to_handle_at: %v", err)
	}
	typS, hS, err := assaytest.FileHandle(dir + "/secret")
	if err != nil {
		t.Fatal(err)
	}
	pol := fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s/secret, id: 7}\n    - {path: %s/vault/, id: 8}\n", dir, dir)
	runChecks(t, pol, func() { dropCaches(t) }, []check{
		{what: "file in a denied directory, by handle", rule: 1000003, action: "open-by-handle", args: []string{dir, typI, hI}},
		{what: "exactly denied file, by handle", rule: 7, action: "open-by-handle", args: []string{dir, typS, hS}},
	})
	// Without directory rules nothing is judged by ancestry: the handle opens.
	pol = fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s/secret, id: 7}\n", dir)
	runChecks(t, pol, func() { dropCaches(t) }, []check{
		{what: "file by handle, no directory rules", action: "open-by-handle", args: []string{dir, typI, hI}},
	})
}

// ---- helpers

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// dropCaches writes back and evicts clean dentries and inodes.
func dropCaches(t *testing.T) {
	t.Helper()
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2\n"), 0); err != nil {
		t.Fatalf("drop_caches: %v", err)
	}
}

// mountImage unpacks the gzipped filesystem image named by the environment
// variable env sparsely into the test's temp dir, attaches it to a loop
// device and mounts it; it returns the mount point.
func mountImage(t *testing.T, env, fstype string) string {
	t.Helper()
	src := os.Getenv(env)
	if src == "" {
		t.Fatalf("%s is not set", env)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), fstype+".img")
	out, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var size int64
	for {
		n, rerr := io.ReadFull(zr, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, err := out.WriteAt(buf[:n], size); err != nil {
					t.Fatal(err)
				}
			}
			size += int64(n)
		}
		if rerr == io.EOF || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			t.Fatal(rerr)
		}
	}
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	out.Close()
	dev := attachLoop(t, img)
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, fstype, 0, ""); err != nil {
		t.Fatalf("mount -t %s %s %s: %v (is the %s module loaded?)", fstype, dev, dir, err, fstype)
	}
	t.Cleanup(func() { unmountT(t, dir) })
	return dir
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// btrfs ioctls (include/uapi/linux/btrfs.h): struct btrfs_ioctl_vol_args is
// { __s64 fd; char name[4088]; }.
const (
	btrfsIocSnapCreate   = 0x50009401 // _IOW(0x94, 1, vol_args)
	btrfsIocSubvolCreate = 0x5000940e // _IOW(0x94, 14, vol_args)
)

type btrfsVolArgs struct {
	FD   int64
	Name [4088]byte
}

func btrfsIoctl(t *testing.T, dir string, req uintptr, fd int64, name string) {
	t.Helper()
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(d)
	var a btrfsVolArgs
	a.FD = fd
	copy(a.Name[:], name)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d), req, uintptr(unsafe.Pointer(&a))); e != 0 {
		t.Fatalf("btrfs ioctl %#x %s/%s: %v", req, dir, name, e)
	}
}

func btrfsSubvolCreate(t *testing.T, parent, name string) {
	btrfsIoctl(t, parent, btrfsIocSubvolCreate, 0, name)
}

func btrfsSnapshot(t *testing.T, src, parent, name string) {
	s, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	btrfsIoctl(t, parent, btrfsIocSnapCreate, int64(s), name)
}
