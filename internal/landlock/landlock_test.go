package landlock

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the sandboxed helper: with ASSAY_LANDLOCK_HELPER
// set it restricts itself with the ruleset on descriptor 3 and reports, one
// line per argument "op:path", what each operation returned.
func TestMain(m *testing.M) {
	if os.Getenv("ASSAY_LANDLOCK_HELPER") == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func helper(ops []string) int {
	runtime.LockOSThread()
	abi, err := ABI()
	if err != nil {
		fmt.Println("abi:", err)
		return 2
	}
	if err := RestrictSelf(3, abi); err != nil {
		fmt.Println("restrict:", err)
		return 2
	}
	for _, op := range ops {
		kind, path, _ := strings.Cut(op, ":")
		var err error
		switch kind {
		case "read":
			var fd int
			fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
		case "write":
			var fd int
			fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
		case "create":
			var fd int
			fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
			if err == nil {
				unix.Close(fd)
			}
		case "list":
			var fd int
			fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				buf := make([]byte, 4096)
				_, err = unix.Getdents(fd, buf)
				unix.Close(fd)
			}
		case "exec":
			// Forked from this (restricted, locked) thread.
			err = exec.Command(path).Run()
			var errno unix.Errno
			if errors.As(err, &errno) {
				err = errno
			}
		case "rename":
			err = unix.Rename(path, path+".renamed")
		}
		fmt.Printf("%s %s\n", op, errName(err))
	}
	return 0
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// sandboxed runs the helper under rs and returns op -> result.
func sandboxed(t *testing.T, rs *Ruleset, ops ...string) map[string]string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", ops...)
	cmd.Env = append(os.Environ(), "ASSAY_LANDLOCK_HELPER=1")
	cmd.ExtraFiles = []*os.File{rs.File()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		op, r, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("helper said %q", out)
		}
		res[op] = r
	}
	return res
}

func requireLandlock(t *testing.T) int {
	t.Helper()
	abi, err := ABI()
	if err != nil {
		testenv.Skipf(t, "Landlock is not available: %v", err)
	}
	return abi
}

func TestHandledFS(t *testing.T) {
	v1 := uint64(1<<13 - 1)
	for _, tc := range []struct {
		abi  int
		want uint64
	}{
		{0, 0},
		{1, v1},
		{2, v1 | AccessRefer},
		{3, v1 | AccessRefer | AccessTruncate},
		{4, v1 | AccessRefer | AccessTruncate},
		{5, v1 | AccessRefer | AccessTruncate | AccessIoctlDev},
		{8, v1 | AccessRefer | AccessTruncate | AccessIoctlDev},
		{9, v1 | AccessRefer | AccessTruncate | AccessIoctlDev | AccessResolveUnix},
		{12, v1 | AccessRefer | AccessTruncate | AccessIoctlDev | AccessResolveUnix},
	} {
		if got := HandledFS(tc.abi); got != tc.want {
			t.Errorf("HandledFS(%d) = %#x, want %#x", tc.abi, got, tc.want)
		}
	}
}

func TestMinimalDenied(t *testing.T) {
	got, err := minimalDenied([]string{"/a/b/c", "/a/b", "/x", "/a/bc", "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/a/b", "/a/bc", "/x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"rel", "/a/../b", "/a/", ""} {
		if _, err := minimalDenied([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := ancestorsOf("/a/b/c"); !reflect.DeepEqual(got, []string{"/", "/a", "/a/b"}) {
		t.Errorf("ancestorsOf = %q", got)
	}
	if got := ancestorsOf("/"); got != nil {
		t.Errorf("ancestorsOf(/) = %q", got)
	}
}

// tree makes root/{secret, sibling, dir/{a, sub/b}, link-to-secret,
// link-to-dir} and returns root.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "secret"), []byte("s"), 0o644))
	must(os.WriteFile(filepath.Join(root, "sibling"), []byte("x"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "dir", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "dir", "a"), []byte("a"), 0o644))
	must(os.WriteFile(filepath.Join(root, "dir", "sub", "b"), []byte("b"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "other"), 0o755))
	must(os.WriteFile(filepath.Join(root, "other", "c"), []byte("c"), 0o644))
	must(os.Symlink("secret", filepath.Join(root, "link-to-secret")))
	must(os.Symlink(root, filepath.Join(root, "other", "link-to-root")))
	return root
}

func TestDenyEnforced(t *testing.T) {
	abi := requireLandlock(t)
	root := tree(t)
	secret, dir := filepath.Join(root, "secret"), filepath.Join(root, "dir")
	rs, err := Deny(abi, []string{secret, dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	res := sandboxed(t, rs,
		"read:"+secret, "write:"+secret, "rename:"+secret,
		"read:"+j("dir", "a"), "read:"+j("dir", "sub", "b"), "create:"+j("dir", "new"), "write:"+j("dir", "a"),
		"read:"+j("link-to-secret"), "read:"+j("other", "link-to-root", "secret"),
		"read:"+j("sibling"), "write:"+j("sibling"), "read:"+j("other", "c"), "create:"+j("other", "new"),
		"list:"+root, "list:/", "list:"+dir,
		"create:"+j("new-in-ancestor"),
		"exec:/bin/true", "read:/etc/passwd",
	)
	want := map[string]string{
		"read:" + secret: "EACCES", "write:" + secret: "EACCES", "rename:" + secret: "EACCES",
		"read:" + j("dir", "a"): "EACCES", "read:" + j("dir", "sub", "b"): "EACCES",
		"create:" + j("dir", "new"): "EACCES", "write:" + j("dir", "a"): "EACCES",
		// A symlink next to the secret does not open a way to it.
		"read:" + j("link-to-secret"): "EACCES", "read:" + j("other", "link-to-root", "secret"): "EACCES",
		"read:" + j("sibling"): "ok", "write:" + j("sibling"): "ok", "read:" + j("other", "c"): "ok",
		"create:" + j("other", "new"): "ok",
		"list:" + root:                "ok", "list:/": "ok",
		// Documented: names inside a denied directory stay listable.
		"list:" + dir: "ok",
		// Documented: the ancestors are read-only.
		"create:" + j("new-in-ancestor"): "EACCES",
		"exec:/bin/true":                 "ok", "read:/etc/passwd": "ok",
	}
	for op, w := range want {
		if res[op] != w {
			t.Errorf("%s: got %s, want %s", op, res[op], w)
		}
	}
	// Outside the sandbox nothing changed.
	if _, err := os.ReadFile(secret); err != nil {
		t.Errorf("the test process itself was restricted: %v", err)
	}
}

// privateTmpEnv marks the re-executed test binary of TestDenyRuleCount,
// which runs in a mount namespace of its own with a fresh tmpfs on /tmp.
const privateTmpEnv = "ASSAY_LANDLOCK_PRIVATE_TMP"

// TestDenyRuleCount checks the exact number of rules Deny adds: one per
// ancestor of a denied path and one per other entry of each ancestor. An
// ancestor is /tmp (t.TempDir), whose entries other tests and go build
// change at any time, so the count runs in a re-executed test binary in a
// mount namespace of its own with a private tmpfs on /tmp: nothing else
// writes there, and the expected count is exact, on the first try.
func TestDenyRuleCount(t *testing.T) {
	abi := requireLandlock(t)
	if os.Getenv(privateTmpEnv) == "" {
		testenv.Privileged(t) // a mount namespace
		cmd := exec.Command("/proc/self/exe", "-test.run=^TestDenyRuleCount$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), privateTmpEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestDenyRuleCount") {
			t.Fatalf("TestDenyRuleCount with a private /tmp: %v\n%s", err, out)
		}
		return
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make the mounts private: %v", err)
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777"); err != nil {
		t.Fatalf("mount a private tmpfs on /tmp: %v", err)
	}
	if os.TempDir() != "/tmp" {
		t.Fatalf("TMPDIR=%s: the test needs its temporary directories in /tmp", os.TempDir())
	}
	root := tree(t)
	rs, err := Deny(abi, []string{filepath.Join(root, "dir", "sub", "b"), filepath.Join(root, "dir", "sub")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { rs.Close() }()
	// The denied file beneath the denied directory is covered by it.
	if want := []string{filepath.Join(root, "dir", "sub")}; !reflect.DeepEqual(rs.Denied, want) {
		t.Errorf("Denied = %q, want %q", rs.Denied, want)
	}
	anc := ancestorsOf(filepath.Join(root, "dir", "sub"))
	if !reflect.DeepEqual(rs.Ancestors, anc) {
		t.Errorf("Ancestors = %q, want %q", rs.Ancestors, anc)
	}
	// Rules = ancestors + every entry of every ancestor that is neither an
	// ancestor, denied, nor a symlink.
	want, links := len(anc), 0
	for _, a := range anc {
		ents, err := os.ReadDir(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := filepath.Join(a, e.Name())
			switch {
			case p == filepath.Join(root, "dir", "sub") || contains(anc, p):
			case e.Type()&os.ModeSymlink != 0:
				links++
			default:
				want++
			}
		}
	}
	if rs.Rules != want || rs.SkippedSymlinks != links {
		t.Fatalf("Rules = %d, SkippedSymlinks = %d; want %d and %d", rs.Rules, rs.SkippedSymlinks, want, links)
	}
	res := sandboxed(t, rs, "read:"+filepath.Join(root, "dir", "a"), "read:"+filepath.Join(root, "dir", "sub", "b"))
	if res["read:"+filepath.Join(root, "dir", "a")] != "ok" || res["read:"+filepath.Join(root, "dir", "sub", "b")] != "EACCES" {
		t.Errorf("got %v", res)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestDenyRefusesSymlinkPaths(t *testing.T) {
	abi := requireLandlock(t)
	root := tree(t)
	for _, p := range []string{filepath.Join(root, "link-to-secret"), filepath.Join(root, "other", "link-to-root", "secret"), filepath.Join(root, "missing")} {
		rs, err := Deny(abi, []string{p})
		if err == nil {
			rs.Close()
			t.Errorf("Deny(%s) succeeded", p)
		}
	}
}

func TestDenyWarnsAboutHardLinks(t *testing.T) {
	abi := requireLandlock(t)
	root := tree(t)
	if err := os.Link(filepath.Join(root, "secret"), filepath.Join(root, "other", "hard")); err != nil {
		t.Fatal(err)
	}
	rs, err := Deny(abi, []string{filepath.Join(root, "secret")})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if len(rs.Warnings) != 1 || !strings.Contains(rs.Warnings[0], "2 hard links") {
		t.Errorf("Warnings = %q", rs.Warnings)
	}
	// Documented: the other name stays readable.
	res := sandboxed(t, rs, "read:"+filepath.Join(root, "secret"), "read:"+filepath.Join(root, "other", "hard"))
	if res["read:"+filepath.Join(root, "secret")] != "EACCES" || res["read:"+filepath.Join(root, "other", "hard")] != "ok" {
		t.Errorf("got %v", res)
	}
}

func TestDenyRoot(t *testing.T) {
	abi := requireLandlock(t)
	rs, err := Deny(abi, []string{"/", "/etc"})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if rs.Rules != 0 || len(rs.Ancestors) != 0 {
		t.Errorf("Rules = %d, Ancestors = %q: want none", rs.Rules, rs.Ancestors)
	}
	res := sandboxed(t, rs, "read:/etc/passwd", "list:/")
	if res["read:/etc/passwd"] != "EACCES" || res["list:/"] != "EACCES" {
		t.Errorf("got %v", res)
	}
}

func TestABIUnavailableError(t *testing.T) {
	if _, err := Deny(0, []string{"/x"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Deny(0) = %v, want ErrUnavailable", err)
	}
}

// TestUnheld: what the fallback cannot hold depends on the rights the
// ruleset handles; attribute changes are never held.
func TestUnheld(t *testing.T) {
	abi7 := &Ruleset{ABI: 7, Handled: AccessTruncate | AccessRefer}
	got := strings.Join(abi7.Unheld(), "\n")
	for _, want := range []string{"chmod, chown and utimes", "extended attributes", "named Unix socket at or beneath a denied path (needs Landlock ABI 9; this kernel has 7)"} {
		if !strings.Contains(got, want) {
			t.Errorf("ABI 7: %q missing from\n%s", want, got)
		}
	}
	if strings.Contains(got, "truncate(2)") {
		t.Errorf("ABI 7 handles truncate:\n%s", got)
	}
	abi9 := &Ruleset{ABI: 9, Handled: AccessTruncate | AccessResolveUnix}
	if got := strings.Join(abi9.Unheld(), "\n"); strings.Contains(got, "Unix socket") {
		t.Errorf("ABI 9 handles Unix sockets:\n%s", got)
	}
	abi1 := &Ruleset{ABI: 1}
	if got := strings.Join(abi1.Unheld(), "\n"); !strings.Contains(got, "truncate(2) of a denied file (needs Landlock ABI 3; this kernel has 1)") {
		t.Errorf("ABI 1:\n%s", got)
	}
}
