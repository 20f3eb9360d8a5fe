package resolve

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type resolver struct {
	name string
	fn   func(string) (Identity, error)
}

// resolvers are the implementations every case runs against: Path, the
// openat2 resolver alone (when the kernel has openat2) and the walk.
var resolvers = func() []resolver {
	rs := []resolver{{"Path", Path}, {"walk", pathByWalk}}
	if _, err := pathByOpenat2("/", "/"); err != unix.ENOSYS {
		rs = append(rs, resolver{"openat2", func(p string) (Identity, error) {
			clean, err := checkPath(p)
			if err != nil {
				return Identity{}, err
			}
			h, err := pathByOpenat2(p, clean)
			if err != nil {
				return Identity{}, err
			}
			h.Close()
			return h.Identity, nil
		}})
	}
	return rs
}()

// tree builds a test tree (in a symlink-free temp dir) and returns its root.
//
//	file            regular file
//	sub/            directory
//	sub/inner       regular file
//	lnk      -> file        (absolute target)
//	rel      -> sub         (relative target)
//	dangling -> missing
func tree(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(d, "file"), []byte("x"), 0o644))
	must(os.Mkdir(filepath.Join(d, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(d, "sub", "inner"), []byte("y"), 0o644))
	must(os.Symlink(filepath.Join(d, "file"), filepath.Join(d, "lnk")))
	must(os.Symlink("sub", filepath.Join(d, "rel")))
	must(os.Symlink(filepath.Join(d, "missing"), filepath.Join(d, "dangling")))
	return d
}

func statIdentity(t *testing.T, p string) Identity {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return Identity{
		Path:    filepath.Clean(p),
		Dev:     uint32(unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)),
		Ino:     st.Ino,
		IsDir:   st.Mode&unix.S_IFMT == unix.S_IFDIR,
		StatDev: st.Dev,
	}
}

func TestResolveOK(t *testing.T) {
	d := tree(t)
	for _, p := range []string{
		filepath.Join(d, "file"),
		filepath.Join(d, "sub"),
		filepath.Join(d, "sub", "inner"),
		d + "/sub/", // trailing slash on a directory
		"/",
	} {
		want := statIdentity(t, p)
		for _, r := range resolvers {
			got, err := r.fn(p)
			if err != nil {
				t.Errorf("%s(%q): %v", r.name, p, err)
				continue
			}
			if got != want {
				t.Errorf("%s(%q) = %+v, want %+v", r.name, p, got, want)
			}
		}
	}
	if id, _ := Path(filepath.Join(d, "sub")); !id.IsDir {
		t.Error("directory not reported as IsDir")
	}
	if id, _ := Path(filepath.Join(d, "file")); id.IsDir {
		t.Error("file reported as IsDir")
	}
}

func TestResolveErrors(t *testing.T) {
	d := tree(t)
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		name  string
		path  string
		is    error    // errors.Is target
		wants []string // substrings of the message
	}{
		{
			name: "final symlink", path: d + "/lnk", is: ErrSymlink,
			wants: []string{"policy path " + d + "/lnk is a symlink (" + d + "/lnk -> " + d + "/file): write the real path " + d + "/file"},
		},
		{
			name: "middle symlink", path: d + "/rel/inner", is: ErrSymlink,
			wants: []string{"policy path " + d + "/rel/inner passes through a symlink (" + d + "/rel -> sub): write the real path " + d + "/sub/inner"},
		},
		{
			name: "middle symlink to missing target", path: d + "/dangling/x", is: ErrSymlink,
			wants: []string{"passes through a symlink (" + d + "/dangling -> " + d + "/missing): write the real path " + d + "/missing/x"},
		},
		{
			name: "dangling final symlink", path: d + "/dangling", is: ErrSymlink,
			wants: []string{"is a symlink (" + d + "/dangling -> " + d + "/missing)"},
		},
		{
			name: "magic link (final)", path: "/proc/" + self + "/exe", is: ErrSymlink,
			wants: []string{"/proc/" + self + "/exe ->"},
		},
		{
			name: "magic link (middle)", path: "/proc/" + self + "/root/etc", is: ErrSymlink,
			wants: []string{"passes through a symlink (/proc/" + self + "/root -> /)", "write the real path /etc"},
		},
		{
			name: "missing", path: d + "/nope", is: fs.ErrNotExist,
			wants: []string{"policy path " + d + "/nope does not exist: create it first or remove the rule (a rule for a missing file would silently protect nothing)"},
		},
		{
			name: "missing parent", path: d + "/nope/deeper", is: fs.ErrNotExist,
			wants: []string{"policy path " + d + "/nope/deeper does not exist"},
		},
		{
			name: "file as directory", path: d + "/file/x", is: unix.ENOTDIR,
			wants: []string{d + "/file is not a directory"},
		},
		{name: "relative", path: "etc/passwd", is: unix.EINVAL, wants: []string{"not absolute"}},
		{name: "dot relative", path: "./x", is: unix.EINVAL, wants: []string{"not absolute"}},
		{name: "empty", path: "", is: unix.EINVAL, wants: []string{"empty"}},
		// Paths are checked by policy.CheckPath, as in the policy file.
		{name: "dotdot", path: d + "/sub/../file", is: unix.EINVAL, wants: []string{"is not clean; write " + d + "/file"}},
		{name: "redundant separators and dot", path: d + "//sub/./inner", is: unix.EINVAL, wants: []string{"is not clean; write " + d + "/sub/inner"}},
		{name: "control character", path: d + "/fi\nle", is: unix.EINVAL, wants: []string{"contains a control character"}},
		{name: "NUL", path: d + "/fi\x00le", is: unix.EINVAL, wants: []string{"contains a control character"}},
	}
	for _, c := range cases {
		var msgs []string
		for _, r := range resolvers {
			_, err := r.fn(c.path)
			if err == nil {
				t.Errorf("%s: %s(%q) succeeded", c.name, r.name, c.path)
				continue
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%s: %s: error %T %v is not *Error", c.name, r.name, err, err)
			}
			if !errors.Is(err, c.is) {
				t.Errorf("%s: %s: error %v is not %v", c.name, r.name, err, c.is)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %s: error\n\t%s\ndoes not contain\n\t%s", c.name, r.name, err, w)
				}
			}
			msgs = append(msgs, err.Error())
		}
		for i := 1; i < len(msgs); i++ {
			if msgs[i] != msgs[0] {
				t.Errorf("%s: resolvers disagree:\n\t%s: %s\n\t%s: %s", c.name, resolvers[0].name, msgs[0], resolvers[i].name, msgs[i])
			}
		}
		if len(msgs) > 0 {
			t.Logf("%s: %s", c.name, msgs[0])
		}
	}
}

// TestPermission checks that EACCES is passed through. As root it drops
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH on a dedicated, locked OS thread
// (capabilities are per-thread) that is thrown away afterwards.
func TestPermission(t *testing.T) {
	d := tree(t)
	locked := filepath.Join(d, "locked")
	if err := os.Mkdir(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(locked, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })

	type result struct {
		errs []error
		err  error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		var res result
		defer func() { ch <- res }()
		if os.Geteuid() == 0 {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if res.err = unix.Capget(&hdr, &data[0]); res.err != nil {
				return
			}
			data[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
			if res.err = unix.Capset(&hdr, &data[0]); res.err != nil {
				return
			}
		}
		for _, r := range resolvers {
			_, err := r.fn(filepath.Join(locked, "f"))
			res.errs = append(res.errs, err)
		}
	}()
	res := <-ch
	if res.err != nil {
		t.Fatalf("dropping capabilities: %v", res.err)
	}
	for i, err := range res.errs {
		if !errors.Is(err, unix.EACCES) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: error %v, want EACCES", resolvers[i].name, err)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Path != filepath.Join(locked, "f") {
			t.Errorf("%s: error %#v does not name the path", resolvers[i].name, err)
		}
		t.Logf("%s: %v", resolvers[i].name, err)
	}
}

func TestKernelDev(t *testing.T) {
	for _, c := range []struct {
		major, minor uint32
		kernel       uint32
	}{
		{8, 1, 8<<20 | 1},
		{0, 284, 284},
		{0, 38, 38},
		{254, 0, 254 << 20},
		{259, 3, 259<<20 | 3},
		{0, 1<<20 - 1, 1<<20 - 1},
		{4095, 0, 4095 << 20},
	} {
		statDev := unix.Mkdev(c.major, c.minor)
		if got := KernelDev(statDev); got != c.kernel {
			t.Errorf("KernelDev(Mkdev(%d, %d) = %#x) = %#x, want %#x", c.major, c.minor, statDev, got, c.kernel)
		}
	}
	// The two encodings of major 0, minor 284.
	if unix.Mkdev(0, 284) != 0x10001c {
		t.Errorf("Mkdev(0, 284) = %#x, want 0x10001c", unix.Mkdev(0, 284))
	}
	if got := KernelDev(0x10001c); got != 0x11c {
		t.Errorf("KernelDev(0x10001c) = %#x, want 0x11c", got)
	}
	// Small devices agree in both encodings.
	if got := KernelDev(unix.Mkdev(0, 38)); uint64(got) != unix.Mkdev(0, 38) {
		t.Errorf("KernelDev(Mkdev(0, 38)) = %#x, want identical encoding", got)
	}
}

// TestRootDev checks Dev of "/" against the major:minor the kernel reports
// for the root mount in /proc/self/mountinfo.
func TestRootDev(t *testing.T) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var majmin string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == "/" {
			majmin = fields[2] // the last mount on "/" is the visible one
		}
	}
	if majmin == "" {
		t.Fatal("no mount for / in /proc/self/mountinfo")
	}
	majS, minS, _ := strings.Cut(majmin, ":")
	major, err1 := strconv.ParseUint(majS, 10, 32)
	minor, err2 := strconv.ParseUint(minS, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad major:minor %q", majmin)
	}
	want := uint32(major<<20 | minor)

	for _, r := range resolvers {
		id, err := r.fn("/")
		if err != nil {
			t.Fatalf("%s(/): %v", r.name, err)
		}
		if id.Dev != want {
			t.Errorf("%s(/).Dev = %#x, want %#x (mountinfo %s)", r.name, id.Dev, want, majmin)
		}
		if !id.IsDir {
			t.Errorf("%s(/) not a directory", r.name)
		}
		if major != 0 && uint64(id.Dev) == id.StatDev {
			t.Errorf("%s(/): Dev %#x equals raw st_dev although major is %d", r.name, id.Dev, major)
		}
	}
	if major == 0 {
		t.Logf("root filesystem has major 0 (%s); the encodings coincide only trivially here", majmin)
	}
}

// TestOpenIn: paths resolve inside the given root; absolute symlinks and
// ".." cannot leave it, and symlinks are refused.
func TestOpenIn(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/etc/secret", []byte("in"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/secret", root+"/link"); err != nil {
		t.Fatal(err)
	}
	h, err := OpenIn(root, "/etc/secret")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Stat(root+"/etc/secret", &st); err != nil {
		t.Fatal(err)
	}
	if h.Ino != st.Ino || h.Path != "/etc/secret" {
		t.Errorf("resolved %+v, want ino %d", h.Identity, st.Ino)
	}
	if _, err := OpenIn(root, "/link"); !errors.Is(err, ErrSymlink) {
		t.Errorf("symlink: %v", err)
	}
	if _, err := OpenIn(root, "/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
