// Package cgroup locates, creates and manages cgroup v2 directories: the
// scopes Assay monitors and enforces policy on.
//
// The cgroup2 hierarchy is always located through /proc/self/mountinfo, never
// assumed to live at /sys/fs/cgroup (hybrid systems mount it at
// /sys/fs/cgroup/unified, containers elsewhere).
package cgroup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Scope is one cgroup v2 directory.
type Scope struct {
	// Path is the absolute, symlink-free path of the cgroup directory.
	Path string
	// ID is the cgroup id: the inode number of the cgroup2 directory, which
	// is what bpf_get_current_cgroup_id() returns for tasks in it.
	ID uint64
	// Level is the depth below the cgroup2 mount root (root = 0,
	// <mount>/a/b = 2).
	Level int
}

// String formats the scope for messages.
func (s Scope) String() string {
	return fmt.Sprintf("cgroup %s (id %d, level %d)", s.Path, s.ID, s.Level)
}

// Mount returns the mount point of the cgroup v2 hierarchy, as found in
// /proc/self/mountinfo. The error is ErrNoMount when there is none.
func Mount() (string, error) {
	m, err := findMount()
	if err != nil {
		return "", err
	}
	return m.MountPoint, nil
}

// Root returns the scope of the cgroup2 mount root.
func Root() (Scope, error) {
	m, err := findMount()
	if err != nil {
		return Scope{}, err
	}
	return resolveIn(m, m.MountPoint)
}

// Resolve returns the scope for path, which is either absolute or relative
// to the cgroup2 mount point. The path must name a directory on the cgroup2
// filesystem below (or at) the cgroup2 mount point.
func Resolve(path string) (Scope, error) {
	m, err := findMount()
	if err != nil {
		return Scope{}, err
	}
	if path == "" {
		return Scope{}, fmt.Errorf("empty cgroup path: give a cgroup directory under %s (or a path relative to it)", m.MountPoint)
	}
	p := path
	if !filepath.IsAbs(p) {
		p = filepath.Join(m.MountPoint, p)
	}
	return resolveIn(m, p)
}

func resolveIn(m mountEntry, p string) (Scope, error) {
	p = filepath.Clean(p)
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Scope{}, fmt.Errorf("cgroup %s does not exist: create it (mkdir %s) or give an existing cgroup directory under %s: %w", p, p, m.MountPoint, err)
		}
		return Scope{}, fmt.Errorf("cgroup %s: %w", p, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(resolved, &sfs); err != nil {
		return Scope{}, fmt.Errorf("cgroup %s: statfs: %w", p, err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return Scope{}, fmt.Errorf("%s is not a cgroup: it is not on a cgroup v2 filesystem (filesystem magic %#x); give a directory under the cgroup2 mount %s", p, sfs.Type, m.MountPoint)
	}
	rel, ok := relUnder(m.MountPoint, resolved)
	if !ok {
		return Scope{}, fmt.Errorf("cgroup %s is not under the cgroup2 mount %s: give a directory under %s", p, m.MountPoint, m.MountPoint)
	}
	var st unix.Stat_t
	if err := unix.Stat(resolved, &st); err != nil {
		return Scope{}, fmt.Errorf("cgroup %s: stat: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return Scope{}, fmt.Errorf("%s is not a cgroup: it is a file, not a directory; give a cgroup directory (the directory containing it is %s)", p, filepath.Dir(resolved))
	}
	level := 0
	if rel != "" {
		level = strings.Count(rel, "/") + 1
	}
	return Scope{Path: resolved, ID: st.Ino, Level: level}, nil
}

// relUnder reports whether p is root or lies below it, and returns p relative
// to root ("" for root itself). Both must be clean absolute paths.
func relUnder(root, p string) (string, bool) {
	if p == root {
		return "", true
	}
	prefix := root
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if !strings.HasPrefix(p, prefix) {
		return "", false
	}
	return p[len(prefix):], true
}

// ForPID returns the cgroup v2 scope of process pid, from the "0::/path"
// line of /proc/PID/cgroup.
func ForPID(pid int) (Scope, error) {
	if pid <= 0 {
		return Scope{}, fmt.Errorf("invalid pid %d", pid)
	}
	file := "/proc/" + strconv.Itoa(pid) + "/cgroup"
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return Scope{}, fmt.Errorf("process %d does not exist (it may have exited): %w", pid, err)
		}
		return Scope{}, fmt.Errorf("reading cgroup of process %d: %w", pid, err)
	}
	cgPath, found := "", false
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			cgPath, found = rest, true
			break
		}
	}
	if !found {
		if len(data) == 0 {
			return Scope{}, fmt.Errorf("process %d has no cgroup information (%s is empty; it may be exiting)", pid, file)
		}
		return Scope{}, fmt.Errorf("process %d has no cgroup v2 entry (\"0::/...\") in %s: the system runs cgroup v1 only; enable the unified hierarchy", pid, file)
	}
	m, err := findMount()
	if err != nil {
		return Scope{}, err
	}
	if cgPath == "" || !strings.HasPrefix(cgPath, "/") {
		return Scope{}, fmt.Errorf("process %d: unexpected cgroup v2 path %q in %s", pid, cgPath, file)
	}
	if cgPath == "/.." || strings.HasPrefix(cgPath, "/../") {
		return Scope{}, fmt.Errorf("process %d is in cgroup %s, outside this cgroup namespace", pid, cgPath)
	}
	// cgPath is relative to the cgroup namespace root; the mount shows the
	// hierarchy from m.Root (normally "/").
	rel, ok := relUnder(m.Root, filepath.Clean(cgPath))
	if !ok {
		return Scope{}, fmt.Errorf("process %d is in cgroup %s, which is not visible under the cgroup2 mount %s (it exposes only %s)", pid, cgPath, m.MountPoint, m.Root)
	}
	s, err := resolveIn(m, filepath.Join(m.MountPoint, rel))
	if err != nil {
		return Scope{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return s, nil
}

// CreateLeaf creates a fresh, uniquely named child cgroup "<prefix>-<random
// hex>" under parent and returns it. parent is a cgroup2 directory (absolute
// or relative to the mount); "" means the cgroup2 mount root. prefix "" means
// "assay"; a trailing "-" on prefix is not doubled.
func CreateLeaf(parent, prefix string) (Scope, error) {
	var ps Scope
	var err error
	if parent == "" {
		ps, err = Root()
	} else {
		ps, err = Resolve(parent)
	}
	if err != nil {
		return Scope{}, err
	}
	prefix = strings.TrimSuffix(prefix, "-")
	if prefix == "" {
		prefix = "assay"
	}
	if strings.ContainsRune(prefix, '/') || prefix == "." || prefix == ".." {
		return Scope{}, fmt.Errorf("invalid cgroup name prefix %q: it must be a single path component", prefix)
	}
	for range 16 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return Scope{}, err
		}
		p := filepath.Join(ps.Path, prefix+"-"+hex.EncodeToString(b[:]))
		err := unix.Mkdir(p, 0o755)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			hint := ""
			switch err {
			case unix.EACCES, unix.EPERM:
				hint = ": run as root or delegate the parent cgroup to this user"
			case unix.EAGAIN:
				hint = ": the parent's cgroup.max.descendants or cgroup.max.depth limit is reached"
			}
			return Scope{}, fmt.Errorf("creating cgroup %s: %w%s", p, err, hint)
		}
		s, err := Resolve(p)
		if err != nil {
			_ = unix.Rmdir(p)
			return Scope{}, err
		}
		return s, nil
	}
	return Scope{}, fmt.Errorf("creating a cgroup under %s: no unused name found", ps.Path)
}

// removeTimeout bounds how long Remove waits for a killed cgroup to empty.
const removeTimeout = 2 * time.Second

// Remove removes the cgroup directory. If it still holds processes they are
// killed (through cgroup.kill when the kernel has it, otherwise by SIGKILLing
// each pid) and Remove waits up to ~2s for the cgroup to empty. Child cgroups
// left behind (e.g. created by the workload) are removed as well. Removing a
// cgroup that no longer exists is not an error. Remove refuses to act if the
// directory at s.Path is no longer the cgroup s.ID.
func Remove(s Scope) error {
	if s.Path == "" {
		return errors.New("cgroup remove: empty scope")
	}
	if mp, err := Mount(); err == nil && filepath.Clean(s.Path) == mp {
		return fmt.Errorf("refusing to remove the cgroup2 root %s", s.Path)
	}
	err := unix.Rmdir(s.Path)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EBUSY {
		return fmt.Errorf("removing cgroup %s: %w", s.Path, err)
	}
	if s.ID != 0 {
		var st unix.Stat_t
		if err := unix.Stat(s.Path, &st); err != nil {
			if err == unix.ENOENT {
				return nil
			}
			return fmt.Errorf("removing cgroup %s: %w", s.Path, err)
		}
		if st.Ino != s.ID {
			return fmt.Errorf("refusing to remove %s: it is now cgroup id %d, not %d (it was removed and recreated)", s.Path, st.Ino, s.ID)
		}
	}
	deadline := time.Now().Add(removeTimeout)
	for {
		killAll(s.Path)
		err := removeTree(s.Path)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		left := time.Until(deadline)
		if !errors.Is(err, unix.EBUSY) || left <= 0 {
			pids, _ := Scope{Path: s.Path}.PIDs()
			return fmt.Errorf("removing cgroup %s: %w (still running after %v: pids %v; kill them and rmdir it by hand)", s.Path, err, removeTimeout, pids)
		}
		// EBUSY: a killed process has not exited yet (rmdir refuses
		// only a populated cgroup). Wait for "populated 0".
		if _, werr := WaitEmpty(s.Path, left); werr != nil {
			return fmt.Errorf("removing cgroup %s: %w (waiting for its processes to exit: %v)", s.Path, err, werr)
		}
	}
}

// killAll kills every process in the subtree at dir.
func killAll(dir string) {
	if writeFile(filepath.Join(dir, "cgroup.kill"), "1") == nil {
		return
	}
	// No cgroup.kill (kernel < 5.14): signal each process, walking the
	// subtree ourselves.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		pids, _ := Scope{Path: p}.PIDs()
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		return nil
	})
}

// removeTree rmdirs dir's child cgroups depth-first, then dir itself.
func removeTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// Open returns an O_RDONLY|O_DIRECTORY descriptor for the cgroup, as used by
// clone3(CLONE_INTO_CGROUP) (exec.Cmd's SysProcAttr.UseCgroupFD/CgroupFD) and
// by BPF cgroup attachment. The descriptor is close-on-exec. Open fails if
// the directory is no longer the cgroup s.ID.
func (s Scope) Open() (*os.File, error) {
	f, err := os.OpenFile(s.Path, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup: %w", err)
	}
	if s.ID != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("opening cgroup %s: fstat: %w", s.Path, err)
		}
		if st.Ino != s.ID {
			f.Close()
			return nil, fmt.Errorf("opening cgroup %s: it is now cgroup id %d, not %d (it was removed and recreated)", s.Path, st.Ino, s.ID)
		}
	}
	return f, nil
}

// AddPID moves process pid (all its threads) into the cgroup by writing to
// cgroup.procs.
func (s Scope) AddPID(pid int) error {
	err := writeFile(filepath.Join(s.Path, "cgroup.procs"), strconv.Itoa(pid))
	if err == nil {
		return nil
	}
	hint := ""
	switch {
	case errors.Is(err, unix.ESRCH):
		hint = ": the process does not exist"
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EOPNOTSUPP):
		hint = ": the cgroup cannot hold processes (controllers enabled in its cgroup.subtree_control, or it is threaded); use a leaf cgroup"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		hint = ": run as root, or own cgroup.procs of the common ancestor of the process's current cgroup and this one (cgroup delegation rules)"
	}
	return fmt.Errorf("adding process %d to cgroup %s: %w%s", pid, s.Path, err, hint)
}

// PIDs lists the processes in the cgroup itself (not its descendants), from
// cgroup.procs.
func (s Scope) PIDs() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(s.Path, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("listing processes of cgroup %s: %w", s.Path, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("listing processes of cgroup %s: bad pid %q", s.Path, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// writeFile writes data to an existing cgroup control file in one write(2).
func writeFile(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
