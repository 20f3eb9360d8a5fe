package cgroup_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/testenv"
)

// newLeaf creates a test cgroup under the cgroup2 root, removed at cleanup.
func newLeaf(t *testing.T, parent string) cgroup.Scope {
	t.Helper()
	s, err := cgroup.CreateLeaf(parent, "assay-test")
	if err != nil {
		t.Fatalf("CreateLeaf(%q): %v", parent, err)
	}
	t.Cleanup(func() {
		if err := cgroup.Remove(s); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return s
}

// startSleep starts a long sleep, killed and reaped at cleanup.
func startSleep(t *testing.T, attr *syscall.SysProcAttr) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sleep: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestMount(t *testing.T) {
	testenv.Privileged(t)
	mp, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(mp) {
		t.Fatalf("Mount() = %q, not absolute", mp)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("Mount() = %q has fs magic %#x, want CGROUP2_SUPER_MAGIC", mp, st.Type)
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.ReplaceAll(f[4], `\040`, " ") == mp && strings.Contains(line, " - cgroup2 ") {
			found = true
		}
	}
	if !found {
		t.Errorf("Mount() = %q: no cgroup2 line for it in /proc/self/mountinfo", mp)
	}
}

func TestRoot(t *testing.T) {
	testenv.Privileged(t)
	mp, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != mp || r.Level != 0 || r.ID == 0 {
		t.Errorf("Root() = %+v, want Path %q, Level 0, non-zero ID", r, mp)
	}
	if !strings.Contains(r.String(), mp) {
		t.Errorf("String() = %q, does not name the path", r.String())
	}
}

func TestCreateLeafAndResolve(t *testing.T) {
	testenv.Privileged(t)
	mp, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	leaf := newLeaf(t, "")
	name := filepath.Base(leaf.Path)
	if !strings.HasPrefix(name, "assay-test-") || len(name) <= len("assay-test-") {
		t.Errorf("leaf name %q, want assay-test-<hex>", name)
	}
	if filepath.Dir(leaf.Path) != mp {
		t.Errorf("leaf %s not directly under %s", leaf.Path, mp)
	}
	if leaf.Level != 1 {
		t.Errorf("leaf level = %d, want 1", leaf.Level)
	}
	var st unix.Stat_t
	if err := unix.Stat(leaf.Path, &st); err != nil {
		t.Fatal(err)
	}
	if leaf.ID != st.Ino {
		t.Errorf("leaf ID = %d, stat inode = %d", leaf.ID, st.Ino)
	}

	// A second leaf under the same parent gets a different name.
	other := newLeaf(t, "")
	if other.Path == leaf.Path || other.ID == leaf.ID {
		t.Errorf("two leaves collide: %v and %v", leaf, other)
	}

	// Default prefix.
	def, err := cgroup.CreateLeaf("", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(def.Path), "assay-") {
		t.Errorf("default leaf name %q, want assay-<hex>", def.Path)
	}
	if err := cgroup.Remove(def); err != nil {
		t.Fatal(err)
	}

	// Nested: parent given as a path relative to the mount.
	child := newLeaf(t, name)
	if child.Level != 2 || filepath.Dir(child.Path) != leaf.Path {
		t.Errorf("child = %+v, want level 2 under %s", child, leaf.Path)
	}
	rel := strings.TrimPrefix(child.Path, mp+"/")
	if got := strings.Count(rel, "/") + 1; got != child.Level {
		t.Errorf("Level %d, path has %d components below the mount", child.Level, got)
	}

	for _, p := range []string{leaf.Path, name, "./" + name, leaf.Path + "/", filepath.Join(child.Path, "..")} {
		got, err := cgroup.Resolve(p)
		if err != nil {
			t.Errorf("Resolve(%q): %v", p, err)
			continue
		}
		if got != leaf {
			t.Errorf("Resolve(%q) = %+v, want %+v", p, got, leaf)
		}
	}
	got, err := cgroup.Resolve(rel)
	if err != nil || got != child {
		t.Errorf("Resolve(%q) = %+v, %v; want %+v", rel, got, err, child)
	}
}

func TestAddPIDAndForPID(t *testing.T) {
	testenv.Privileged(t)
	leaf := newLeaf(t, "")
	cmd := startSleep(t, nil)
	pid := cmd.Process.Pid

	if err := leaf.AddPID(pid); err != nil {
		t.Fatal(err)
	}
	got, err := cgroup.ForPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got != leaf {
		t.Errorf("ForPID(%d) = %+v, want %+v", pid, got, leaf)
	}
	pids, err := leaf.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pids, []int{pid}) {
		t.Errorf("PIDs() = %v, want [%d]", pids, pid)
	}

	self, err := cgroup.ForPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self == leaf {
		t.Error("ForPID(self) returned the test leaf")
	}

	if err := leaf.AddPID(1 << 30); err == nil {
		t.Error("AddPID(non-existent pid) succeeded")
	}
}

func TestOpenCloneIntoCgroup(t *testing.T) {
	testenv.Privileged(t)
	leaf := newLeaf(t, "")
	f, err := leaf.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ino != leaf.ID || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("Open() fd: ino %d mode %o, want directory ino %d", st.Ino, st.Mode, leaf.ID)
	}
	cmd := startSleep(t, &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())})
	got, err := cgroup.ForPID(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if got != leaf {
		t.Errorf("child started with CLONE_INTO_CGROUP is in %v, want %v", got, leaf)
	}
}

func TestRemoveKillsProcesses(t *testing.T) {
	testenv.Privileged(t)
	leaf, err := cgroup.CreateLeaf("", "assay-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cgroup.Remove(leaf) })
	// A nested cgroup with a process of its own, as a workload might create.
	nested, err := cgroup.CreateLeaf(leaf.Path, "")
	if err != nil {
		t.Fatal(err)
	}
	a := startSleep(t, nil)
	b := startSleep(t, nil)
	if err := leaf.AddPID(a.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := nested.AddPID(b.Process.Pid); err != nil {
		t.Fatal(err)
	}

	// Remove kills rather than waits: it returns an error when processes
	// remain after its own bound (removeTimeout), and each sleep (60 s)
	// must have died of SIGKILL (below). No wall-clock threshold here: on
	// a busy machine Remove's own syscalls can take seconds.
	if err := cgroup.Remove(leaf); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leaf.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove, stat %s: %v (want not exist)", leaf.Path, err)
	}
	for _, c := range []*exec.Cmd{a, b} {
		err := c.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("pid %d: Wait() = %v, want killed", c.Process.Pid, err)
			continue
		}
		if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("pid %d: exit status %v, want SIGKILL", c.Process.Pid, ws)
		}
	}
	// Removing again is not an error.
	if err := cgroup.Remove(leaf); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRemoveEmpty(t *testing.T) {
	testenv.Privileged(t)
	leaf, err := cgroup.CreateLeaf("", "assay-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := cgroup.Remove(leaf); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leaf.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove, stat %s: %v (want not exist)", leaf.Path, err)
	}
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	if err := cgroup.Remove(root); err == nil {
		t.Error("Remove(root) succeeded")
	}
}

func TestErrors(t *testing.T) {
	testenv.Privileged(t)
	mp, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	leaf := newLeaf(t, "")

	check := func(what string, err error, wants ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		t.Logf("%s: %v", what, err)
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", what, err, w)
			}
		}
	}

	tmp := t.TempDir()
	_, err = cgroup.Resolve(tmp)
	check("Resolve(tmpdir)", err, tmp, "not a cgroup", mp)
	_, err = cgroup.Resolve("/tmp")
	check("Resolve(/tmp)", err, "/tmp", "not a cgroup")

	missing := filepath.Join(mp, "assay-no-such-cgroup-4f1c")
	_, err = cgroup.Resolve(missing)
	check("Resolve(missing)", err, missing, "does not exist")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Resolve(missing) error %v does not wrap ErrNotExist", err)
	}
	_, err = cgroup.Resolve("assay-no-such-cgroup-4f1c")
	check("Resolve(missing relative)", err, missing, "does not exist")

	_, err = cgroup.Resolve(filepath.Join(leaf.Path, "cgroup.procs"))
	check("Resolve(control file)", err, "cgroup.procs", "not a directory")

	_, err = cgroup.Resolve("../..")
	check("Resolve(../..)", err, "not")

	_, err = cgroup.Resolve("")
	check("Resolve(\"\")", err, "empty")

	_, err = cgroup.CreateLeaf("/tmp", "")
	check("CreateLeaf(/tmp)", err, "/tmp", "not a cgroup")
	_, err = cgroup.CreateLeaf("", "a/b")
	check("CreateLeaf(prefix with slash)", err, "a/b")

	// A dead pid: start a process, reap it, then ask for it.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	if _, err := os.Stat("/proc/" + strconv.Itoa(dead)); err == nil {
		t.Skipf("pid %d was reused", dead)
	}
	_, err = cgroup.ForPID(dead)
	check("ForPID(dead)", err, strconv.Itoa(dead), "does not exist")
	_, err = cgroup.ForPID(0)
	check("ForPID(0)", err, "invalid pid")
}

// TestSubtreeMount fakes a mount table in which the cgroup2 filesystem is
// only visible as a bind mount of a subtree (mount root != "/"), as in some
// containers, and checks paths are mapped and confined accordingly.
func TestSubtreeMount(t *testing.T) {
	testenv.Privileged(t)
	realMount, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	leaf := newLeaf(t, "")
	nested := newLeaf(t, leaf.Path)
	inside := startSleep(t, nil)
	if err := nested.AddPID(inside.Process.Pid); err != nil {
		t.Fatal(err)
	}

	mi := filepath.Join(t.TempDir(), "mountinfo")
	line := "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n" +
		"99 27 0:38 /" + filepath.Base(leaf.Path) + " " + leaf.Path + " rw,relatime - cgroup2 cgroup2 rw\n"
	if err := os.WriteFile(mi, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	defer cgroup.SetMountInfoPath(mi)()

	if mp, err := cgroup.Mount(); err != nil || mp != leaf.Path {
		t.Fatalf("Mount() = %q, %v; want %q", mp, err, leaf.Path)
	}
	got, err := cgroup.ForPID(inside.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != nested.Path || got.ID != nested.ID || got.Level != 1 {
		t.Errorf("ForPID in subtree mount = %+v, want %s at level 1", got, nested.Path)
	}
	if _, err := cgroup.ForPID(os.Getpid()); err == nil || !strings.Contains(err.Error(), "not visible") {
		t.Errorf("ForPID(self) outside the visible subtree: err = %v, want 'not visible'", err)
	}
	if _, err := cgroup.Resolve(realMount); err == nil || !strings.Contains(err.Error(), "not under the cgroup2 mount") {
		t.Errorf("Resolve(%s) outside the mount: err = %v, want 'not under the cgroup2 mount'", realMount, err)
	}
}
