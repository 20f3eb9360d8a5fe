// Package resolve turns policy paths into the file identity the kernel sees
// (super block device + inode number), refusing any path that is or passes
// through a symlink.
//
// BPF programs compare inode->i_sb->s_dev and inode->i_ino, so a policy rule
// must be keyed by exactly those values. Resolution is done without
// following symlinks: a rule written for /etc/x that silently landed on the
// target of a symlink would protect the wrong file (or, if the link is later
// re-pointed, nothing at all).
//
// Identity here comes from stat(2), which is not what the kernel compares
// on every filesystem (btrfs subvolumes and overlayfs report other device
// numbers than the super block's). The identity enforced is read from the
// kernel's own objects: Open keeps the O_PATH descriptor of the resolved
// path so that the caller can have the kernel read it (kernel.Identify).
package resolve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

// Identity is the kernel-visible identity of a policy path.
type Identity struct {
	// Path is the cleaned absolute path that was resolved.
	Path string
	// Dev is the kernel's encoding of inode->i_sb->s_dev:
	// MKDEV(major, minor) = major<<20 | minor.
	Dev uint32
	// Ino is the inode number.
	Ino uint64
	// IsDir reports whether the path is a directory.
	IsDir bool
	// StatDev is st_dev as returned by stat(2) (the userspace dev_t
	// encoding, see unix.Mkdev).
	StatDev uint64
}

// ErrSymlink is wrapped by errors for paths that are or pass through a
// symbolic link.
var ErrSymlink = errors.New("path contains a symlink")

// Error is the error returned by Path. It unwraps to ErrSymlink for symlinks
// and to the syscall errno otherwise (so errors.Is(err, fs.ErrNotExist) and
// errors.Is(err, fs.ErrPermission) work).
type Error struct {
	Path   string // the policy path as given
	Reason string // what is wrong and what to do
	Err    error  // underlying cause
}

func (e *Error) Error() string {
	p := e.Path
	if p == "" {
		p = `""`
	}
	return "policy path " + p + " " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// KernelDev converts a stat(2) st_dev into the kernel's internal dev_t
// encoding (MKDEV(major, minor) = major<<20 | minor), which is what
// inode->i_sb->s_dev holds and what BPF programs read. The two encodings
// agree only for major 0 with minor < 256.
func KernelDev(statDev uint64) uint32 {
	return unix.Major(statDev)<<20 | unix.Minor(statDev)&(1<<20-1)
}

// Path resolves an absolute policy path to its stat(2) identity. It uses
// openat2(2) with RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS, falling back to
// a component-by-component walk on kernels without openat2.
func Path(path string) (Identity, error) {
	h, err := Open(path)
	if err != nil {
		return Identity{}, err
	}
	h.Close()
	return h.Identity, nil
}

// Handle is a resolved policy path held open: FD is an O_PATH|O_NOFOLLOW
// descriptor of exactly the inode the path resolved to.
type Handle struct {
	Identity
	FD int
}

// Close closes the descriptor.
func (h *Handle) Close() error {
	if h.FD < 0 {
		return nil
	}
	err := unix.Close(h.FD)
	h.FD = -1
	return err
}

// Open resolves path like Path and keeps its descriptor open.
func Open(path string) (*Handle, error) {
	clean, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	h, err := pathByOpenat2(path, clean)
	if err == unix.ENOSYS || err == unix.EPERM {
		// ENOSYS: kernel < 5.6. EPERM: some seccomp profiles reject unknown
		// syscalls with EPERM. The walk is equally strict.
		return walk(path, clean)
	}
	return h, err
}

// checkPath validates a policy path with policy.CheckPath, the one
// definition of a valid policy path, and returns it without its trailing
// slash.
func checkPath(path string) (string, error) {
	clean, _, err := policy.CheckPath(path)
	if err != nil {
		var pe *policy.PathError
		reason := err.Error()
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		return "", &Error{Path: path, Reason: reason, Err: unix.EINVAL}
	}
	return clean, nil
}

// pathByOpenat2 resolves clean with a single openat2 call. ENOSYS and EPERM
// are returned as bare errnos so Open can fall back to the walk; other
// failures are diagnosed by the walk and returned as *Error.
func pathByOpenat2(orig, clean string) (*Handle, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	var fd int
	var err error
	for {
		fd, err = unix.Openat2(unix.AT_FDCWD, clean, &how)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.ENOSYS || err == unix.EPERM {
		return nil, err
	}
	if err != nil {
		// Let the walk pin down which component failed and why (e.g. which
		// one is the symlink behind ELOOP), so both resolvers report alike.
		h, werr := walk(orig, clean)
		if werr != nil {
			return nil, werr
		}
		h.Close()
		return nil, errnoError(orig, clean, err)
	}
	return handleOf(orig, clean, fd)
}

// pathByWalk resolves path by opening each component from "/" with
// openat(O_PATH|O_NOFOLLOW) and refusing symlinks: the fallback for kernels
// without openat2 (< 5.6).
func pathByWalk(path string) (Identity, error) {
	clean, err := checkPath(path)
	if err != nil {
		return Identity{}, err
	}
	h, err := walk(path, clean)
	if err != nil {
		return Identity{}, err
	}
	h.Close()
	return h.Identity, nil
}

func walk(orig, clean string) (*Handle, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errnoError(orig, "/", err)
	}
	cur := "/"
	comps := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	if clean == "/" {
		comps = nil
	}
	for i, c := range comps {
		var next int
		for {
			next, err = unix.Openat(fd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != unix.EINTR {
				break
			}
		}
		unix.Close(fd)
		cur = filepath.Join(cur, c)
		if err != nil {
			return nil, errnoError(orig, cur, err)
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, errnoError(orig, cur, err)
		}
		last := i == len(comps)-1
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			target := readlinkFd(fd)
			unix.Close(fd)
			return nil, symlinkError(orig, clean, cur, target)
		case !last && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			unix.Close(fd)
			return nil, errnoError(orig, cur, unix.ENOTDIR)
		}
	}
	return handleOf(orig, clean, fd)
}

// handleOf makes the handle of fd, closing fd on error.
func handleOf(orig, clean string, fd int) (*Handle, error) {
	id, err := identityOf(orig, clean, fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Handle{Identity: id, FD: fd}, nil
}

func identityOf(orig, clean string, fd int) (Identity, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Identity{}, errnoError(orig, clean, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// O_PATH|O_NOFOLLOW on a final symlink opens the link itself.
		return Identity{}, symlinkError(orig, clean, clean, readlinkFd(fd))
	}
	return Identity{
		Path:    clean,
		Dev:     KernelDev(st.Dev),
		Ino:     st.Ino,
		IsDir:   st.Mode&unix.S_IFMT == unix.S_IFDIR,
		StatDev: st.Dev,
	}, nil
}

// symlinkError reports that component link of clean is a symlink to target.
func symlinkError(orig, clean, link, target string) error {
	if target == "" {
		target = "?"
	}
	verb := "passes through a symlink"
	if link == clean {
		verb = "is a symlink"
	}
	reason := fmt.Sprintf("%s (%s -> %s)", verb, link, target)
	rp := realPath(clean, link, target)
	if sp, ok := procSelf(textualPath(clean, link, target), rp); ok {
		// e.g. /etc/mtab -> /proc/self/mounts: resolving it here names
		// assay's own /proc/PID, which is no answer for the rule.
		reason += ": it resolves to " + sp + ", a different file for every process, which a file rule cannot name; remove the rule"
	} else if rp != "" && rp != clean {
		reason += ": write the real path " + rp
	} else {
		reason += ": write the path of the real file instead"
	}
	return &Error{Path: orig, Reason: reason, Err: ErrSymlink}
}

// realPath is a best-effort guess at what clean resolves to: the fully
// resolved path if it exists, else the resolved symlink target with the rest
// of the path appended.
func realPath(clean, link, target string) string {
	if r, err := filepath.EvalSymlinks(clean); err == nil {
		return r
	}
	if target == "" {
		return ""
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	if r, err := filepath.EvalSymlinks(target); err == nil {
		target = r
	}
	rest := strings.TrimPrefix(clean, link)
	return filepath.Clean(target + rest)
}

// textualPath is clean with its symlink component link replaced by the
// link's target as written, without resolving anything further.
func textualPath(clean, link, target string) string {
	if target == "" {
		return ""
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	return filepath.Clean(target + strings.TrimPrefix(clean, link))
}

// procSelf reports whether a symlink leads into /proc/self or
// /proc/thread-self, whose meaning depends on the process that looks:
// textually, or resolved (into this process's /proc/PID or
// /proc/PID/task/TID). It returns the path with /proc/self.
func procSelf(textual, resolved string) (string, bool) {
	for _, pre := range []string{"/proc/self", "/proc/thread-self"} {
		if textual == pre || strings.HasPrefix(textual, pre+"/") {
			return textual, true
		}
	}
	pid := "/proc/" + strconv.Itoa(os.Getpid())
	if rest, ok := strings.CutPrefix(resolved, pid); ok && (rest == "" || rest[0] == '/') {
		if _, after, ok := strings.Cut(rest, "/task/"); ok {
			_, tail, _ := strings.Cut(after, "/")
			return filepath.Join("/proc/thread-self", tail), true
		}
		return "/proc/self" + rest, true
	}
	return "", false
}

// readlinkFd reads the target of the symlink an O_PATH|O_NOFOLLOW fd refers
// to (readlinkat with an empty path, Linux >= 2.6.39).
func readlinkFd(fd int) string {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// errnoError turns a resolution errno at component at into an *Error.
func errnoError(orig, at string, err error) error {
	switch err {
	case unix.ENOENT:
		if i := strings.IndexAny(orig, "*?["); i >= 0 {
			dir := orig[:strings.LastIndexByte(orig[:i], '/')+1]
			return &Error{Path: orig, Reason: fmt.Sprintf("does not exist, and patterns (%q) are not supported: paths are taken literally; to deny everything beneath a directory, write the directory with a trailing slash (%s)", orig[i:i+1], dir), Err: err}
		}
		return &Error{Path: orig, Reason: "does not exist: create it first or remove the rule (a rule for a missing file would silently protect nothing)", Err: err}
	case unix.ENOTDIR:
		return &Error{Path: orig, Reason: fmt.Sprintf("does not exist: %s is not a directory", at), Err: err}
	case unix.EACCES, unix.EPERM:
		return &Error{Path: orig, Reason: fmt.Sprintf("cannot be resolved: %v looking up %s (run as root or fix the permissions)", err, at), Err: err}
	}
	return &Error{Path: orig, Reason: fmt.Sprintf("cannot be resolved: %s: %v", at, err), Err: err}
}

// OpenIn resolves path as a process whose root directory is root sees it
// (root is typically a container's /proc/PID/root): openat2 with
// RESOLVE_IN_ROOT, so ".." and absolute names stay inside root, and
// without following any symlink. Identity.Path is path as given (cleaned).
func OpenIn(root, path string) (*Handle, error) {
	if root == "" || root == "/" {
		return Open(path)
	}
	clean, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Path: path, Reason: fmt.Sprintf("cannot be resolved: the root %s cannot be opened: %v", root, err), Err: err}
	}
	defer unix.Close(rfd)
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	rel := strings.TrimPrefix(clean, "/")
	if rel == "" {
		rel = "."
	}
	var fd int
	for {
		fd, err = unix.Openat2(rfd, rel, &how)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.ELOOP:
		return nil, &Error{Path: path, Reason: "is or passes through a symlink inside " + root + ": write the path of the real file instead", Err: ErrSymlink}
	case err == unix.ENOSYS:
		return nil, &Error{Path: path, Reason: "cannot be resolved inside " + root + ": the kernel has no openat2 (Linux 5.6 or later is needed)", Err: err}
	case err != nil:
		return nil, errnoError(path, clean+" (inside "+root+")", err)
	}
	return handleOf(path, clean, fd)
}
