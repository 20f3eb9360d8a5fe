// Package landlock enforces Assay's file deny rules with Landlock when BPF
// LSM is not usable. It talks to the kernel with raw syscalls.
//
// # From deny rules to Landlock
//
// Landlock rules only grant access: a ruleset "handles" a set of access
// rights, and every handled right is denied except beneath the paths that
// rules grant it on. Rights granted on a directory apply to its whole
// subtree. Assay's policy denies paths, so [Deny] turns "everything except
// the denied paths" into grants:
//
//   - Every proper ancestor of a denied path (/, then each directory on the
//     way down) is an "ancestor". Each ancestor is granted READ_DIR only, so
//     it can still be listed.
//   - Every entry of an ancestor that is neither an ancestor nor denied (a
//     "sibling") is granted every access right the kernel's ABI knows:
//     EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, REMOVE_DIR, REMOVE_FILE,
//     MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK,
//     MAKE_SYM, plus REFER (ABI 2), TRUNCATE (ABI 3), IOCTL_DEV (ABI 5) and
//     RESOLVE_UNIX (ABI 9). A sibling that is not a directory gets the rights
//     that apply to files (EXECUTE, WRITE_FILE, READ_FILE, TRUNCATE,
//     IOCTL_DEV, RESOLVE_UNIX). Symlinks are skipped: a rule is never put on
//     what a link points to, and a link is reached through its target's own
//     location anyway.
//   - Denied paths get no rule; neither does anything beneath them.
//
// The number of rules is the number of ancestors plus the number of
// siblings (the entries of all ancestors, minus ancestors, denied paths and
// symlinks). A denied file in a directory with 100,000 entries costs
// 100,000 landlock_add_rule calls (about a microsecond each) and the
// kernel memory for as many rules.
//
// # Precise semantics and their cost
//
// Inside the sandbox:
//
//   - A denied file cannot be opened for reading or writing, executed or
//     truncated. Nothing beneath a denied directory can be opened, executed,
//     created, removed, renamed or linked.
//   - The names inside a denied directory can still be listed (READ_DIR is
//     granted on the ancestors and Landlock grants are inherited by the
//     whole subtree): contents are protected, names are not. stat(2) is not
//     controlled by Landlock either: sizes, owners and times stay visible.
//   - The ancestors themselves are read-only directories: nothing can be
//     created in, removed from or renamed into or out of /, or any other
//     directory on the way to a denied path. Denying /tmp/x therefore makes
//     mkstemp("/tmp/...") fail for the workload; denying
//     /home/u/.aws/credentials stops it from creating new files directly in
//     /, /home, /home/u and /home/u/.aws (existing files there stay
//     writable, and the sibling directories such as /home/u/.cache stay
//     fully writable).
//   - Entries that appear in an ancestor after the sandbox starts (created
//     by another process) have no rule and are inaccessible to the workload.
//   - Landlock is path based: the rule protects the denied location, not the
//     inode. A hard link to a denied file elsewhere, or a bind mount of a
//     denied directory elsewhere, is accessible; a file that another process
//     renames out of a denied directory becomes accessible at its new name,
//     and a file renamed into a denied directory becomes inaccessible. (BPF
//     LSM rules, in contrast, follow the inode.) [Deny] reports denied files
//     with more than one hard link.
//   - Descriptors opened before the sandbox started (the standard streams)
//     are not affected.
//   - The sandbox is inherited by every descendant and cannot be removed,
//     not even by root.
//
// Landlock decides with EACCES (the BPF LSM path answers EPERM). Its
// denials are not in Assay's event stream; on kernels with ABI 7 or later
// [RestrictSelf] asks the kernel to audit-log denials made after exec
// (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON), so they appear in the kernel
// audit log (auditd, or dmesg without it) when audit is enabled.
package landlock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Access rights (include/uapi/linux/landlock.h).
const (
	AccessExecute     uint64 = unix.LANDLOCK_ACCESS_FS_EXECUTE
	AccessWriteFile   uint64 = unix.LANDLOCK_ACCESS_FS_WRITE_FILE
	AccessReadFile    uint64 = unix.LANDLOCK_ACCESS_FS_READ_FILE
	AccessReadDir     uint64 = unix.LANDLOCK_ACCESS_FS_READ_DIR
	AccessRemoveDir   uint64 = unix.LANDLOCK_ACCESS_FS_REMOVE_DIR
	AccessRemoveFile  uint64 = unix.LANDLOCK_ACCESS_FS_REMOVE_FILE
	AccessMakeChar    uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_CHAR
	AccessMakeDir     uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_DIR
	AccessMakeReg     uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_REG
	AccessMakeSock    uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_SOCK
	AccessMakeFifo    uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_FIFO
	AccessMakeBlock   uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK
	AccessMakeSym     uint64 = unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	AccessRefer       uint64 = unix.LANDLOCK_ACCESS_FS_REFER        // ABI 2
	AccessTruncate    uint64 = unix.LANDLOCK_ACCESS_FS_TRUNCATE     // ABI 3
	AccessIoctlDev    uint64 = unix.LANDLOCK_ACCESS_FS_IOCTL_DEV    // ABI 5
	AccessResolveUnix uint64 = unix.LANDLOCK_ACCESS_FS_RESOLVE_UNIX // ABI 9
)

// restrict_self flags.
const (
	logNewExecOn = unix.LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON // ABI 7
)

// MaxKnownABI is the newest Landlock ABI whose file-system rights this
// package knows. Newer kernels are used at this ABI: rights added later are
// not handled, so they stay allowed everywhere.
const MaxKnownABI = 9

// ErrUnavailable is wrapped by ABI's error when the kernel has no Landlock.
var ErrUnavailable = errors.New("landlock unavailable")

// ABI returns the kernel's Landlock ABI version. The error wraps
// ErrUnavailable and the errno: ENOSYS (kernel built without Landlock) or
// EOPNOTSUPP (Landlock not enabled at boot: add landlock to lsm=).
func ABI() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		var hint string
		switch errno {
		case unix.ENOSYS:
			hint = "the kernel is built without CONFIG_SECURITY_LANDLOCK"
		case unix.EOPNOTSUPP:
			hint = "Landlock is not enabled at boot: add landlock to the lsm= kernel parameter"
		default:
			hint = "landlock_create_ruleset failed"
		}
		name := unix.ErrnoName(errno)
		if errno == unix.EOPNOTSUPP {
			name = "EOPNOTSUPP" // the same number as ENOTSUP
		}
		return 0, fmt.Errorf("%w: %s: %w (%s)", ErrUnavailable, hint, errno, name)
	}
	return int(v), nil
}

// HandledFS returns every file-system access right of ABI abi (capped at
// MaxKnownABI): the rights a deny ruleset handles.
func HandledFS(abi int) uint64 {
	if abi < 1 {
		return 0
	}
	r := AccessExecute | AccessWriteFile | AccessReadFile | AccessReadDir | AccessRemoveDir |
		AccessRemoveFile | AccessMakeChar | AccessMakeDir | AccessMakeReg | AccessMakeSock |
		AccessMakeFifo | AccessMakeBlock | AccessMakeSym
	if abi >= 2 {
		r |= AccessRefer
	}
	if abi >= 3 {
		r |= AccessTruncate
	}
	if abi >= 5 {
		r |= AccessIoctlDev
	}
	if abi >= 9 {
		r |= AccessResolveUnix
	}
	return r
}

// fileRights are the rights a rule on a non-directory may carry.
const fileRights = AccessExecute | AccessWriteFile | AccessReadFile | AccessTruncate | AccessIoctlDev | AccessResolveUnix

// Ruleset is a Landlock ruleset under construction or ready to be applied.
type Ruleset struct {
	f *os.File
	// ABI is the ABI the ruleset was built for.
	ABI int
	// Handled is the handled_access_fs mask.
	Handled uint64
	// Rules is how many rules were added.
	Rules int
	// Ancestors are the directories granted READ_DIR only, sorted.
	Ancestors []string
	// Denied are the denied paths that have no rule (a path beneath another
	// denied directory is covered by it and left out), sorted.
	Denied []string
	// SkippedSymlinks counts siblings that are symlinks (no rule needed).
	SkippedSymlinks int
	// Warnings are caveats worth telling the operator, e.g. a denied file
	// with other hard links.
	Warnings []string
}

// File returns the ruleset descriptor, to be passed to the process that
// calls RestrictSelf. It stays owned by the Ruleset.
func (r *Ruleset) File() *os.File { return r.f }

// Close releases the ruleset descriptor. Processes already restricted keep
// their sandbox.
func (r *Ruleset) Close() error {
	if r == nil || r.f == nil {
		return nil
	}
	return r.f.Close()
}

type rulesetAttr struct {
	handledFS  uint64
	handledNet uint64
	scoped     uint64
}

type pathBeneathAttr struct {
	allowed  uint64
	parentFD int32
	_        int32 // the kernel struct is packed: 12 bytes are read
}

func createRuleset(handled uint64) (*os.File, error) {
	attr := rulesetAttr{handledFS: handled}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return nil, fmt.Errorf("landlock_create_ruleset: %w (%s)", errno, unix.ErrnoName(errno))
	}
	unix.CloseOnExec(int(fd))
	return os.NewFile(fd, "landlock-ruleset"), nil
}

func (r *Ruleset) add(fd int, allowed uint64) error {
	attr := pathBeneathAttr{allowed: allowed, parentFD: int32(fd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, r.f.Fd(), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	r.Rules++
	return nil
}

// Deny builds a ruleset that handles every file-system right of abi and
// grants all of them everywhere except at and beneath the denied paths; see
// the package documentation for the exact semantics. Each path must be
// absolute and clean and must exist; no component may be a symlink. The
// walk opens every component with O_NOFOLLOW, so a path that changes under
// it fails instead of landing elsewhere.
func Deny(abi int, denied []string) (*Ruleset, error) {
	if abi < 1 {
		return nil, fmt.Errorf("%w: ABI %d", ErrUnavailable, abi)
	}
	if abi > MaxKnownABI {
		abi = MaxKnownABI
	}
	paths, err := minimalDenied(denied)
	if err != nil {
		return nil, err
	}
	handled := HandledFS(abi)
	f, err := createRuleset(handled)
	if err != nil {
		return nil, err
	}
	r := &Ruleset{f: f, ABI: abi, Handled: handled, Denied: paths}
	if err := r.build(paths); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// minimalDenied validates and sorts the denied paths and drops those
// beneath another denied path.
func minimalDenied(denied []string) ([]string, error) {
	var ps []string
	for _, p := range denied {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("landlock: denied path %q is not absolute and clean", p)
		}
		ps = append(ps, p)
	}
	sort.Strings(ps)
	var out []string
	for _, p := range ps {
		covered := false
		for _, q := range out {
			if p == q || under(p, q) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out, nil
}

// under reports whether p lies strictly beneath dir.
func under(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// ancestorsOf returns the proper ancestors of p, from / down.
func ancestorsOf(p string) []string {
	if p == "/" {
		return nil
	}
	out := []string{"/"}
	parts := strings.Split(p[1:], "/")
	for i := 1; i < len(parts); i++ {
		out = append(out, "/"+strings.Join(parts[:i], "/"))
	}
	return out
}

func (r *Ruleset) build(denied []string) error {
	deniedSet := map[string]bool{}
	ancSet := map[string]bool{}
	for _, p := range denied {
		deniedSet[p] = true
		for _, a := range ancestorsOf(p) {
			ancSet[a] = true
		}
	}
	if deniedSet["/"] {
		// Everything is denied: a ruleset without rules.
		return nil
	}
	for a := range ancSet {
		r.Ancestors = append(r.Ancestors, a)
	}
	sort.Strings(r.Ancestors)
	// Check the denied paths themselves: they must exist without symlinks.
	for _, p := range denied {
		fd, err := openNoFollow(p, unix.O_PATH)
		if err != nil {
			return fmt.Errorf("landlock: denied path %s: %w", p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("landlock: denied path %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("landlock: denied path %s is a symlink: deny its target instead", p)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s has %d hard links: Landlock denies this name only, the other names of the file stay readable", p, st.Nlink))
		}
	}
	for _, a := range r.Ancestors {
		if err := r.addAncestor(a, ancSet, deniedSet); err != nil {
			return err
		}
	}
	return nil
}

// addAncestor grants READ_DIR on dir and everything on its siblings.
func (r *Ruleset) addAncestor(dir string, ancSet, deniedSet map[string]bool) error {
	fd, err := openNoFollow(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("landlock: open %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	if err := r.add(fd, AccessReadDir&r.Handled); err != nil {
		return fmt.Errorf("landlock: add rule for %s: %w", dir, err)
	}
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			child := filepath.Join(dir, name)
			if ancSet[child] || deniedSet[child] {
				continue
			}
			if err := r.addSibling(fd, name, child); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("landlock: list %s: %w", dir, err)
		}
	}
}

func (r *Ruleset) addSibling(dirfd int, name, path string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil // removed since it was listed: nothing to grant
	}
	if err != nil {
		return fmt.Errorf("landlock: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock: stat %s: %w", path, err)
	}
	allowed := r.Handled
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		r.SkippedSymlinks++
		return nil
	case unix.S_IFDIR:
	default:
		allowed &= fileRights
	}
	if err := r.add(fd, allowed); err != nil {
		if err == unix.EBADFD {
			// An internal or unmountable file system object: Landlock
			// cannot hold a rule for it (and does not restrict it).
			return nil
		}
		return fmt.Errorf("landlock: add rule for %s: %w (%s)", path, err, unix.ErrnoName(err.(unix.Errno)))
	}
	return nil
}

// openNoFollow opens p (absolute) one component at a time with O_NOFOLLOW,
// so that no symlink is followed anywhere on the way.
func openNoFollow(p string, flags int) (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if p == "/" {
		if flags == unix.O_PATH {
			return fd, nil
		}
		unix.Close(fd)
		return unix.Open("/", flags|unix.O_CLOEXEC, 0)
	}
	parts := strings.Split(p[1:], "/")
	for i, part := range parts {
		fl := unix.O_PATH | unix.O_DIRECTORY
		if i == len(parts)-1 {
			fl = flags
		}
		next, err := unix.Openat(fd, part, fl|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err == unix.ELOOP || (err == unix.ENOTDIR && i < len(parts)-1) {
			return -1, fmt.Errorf("%s is or passes through a symlink (or a non-directory): %w", "/"+strings.Join(parts[:i+1], "/"), err)
		}
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// RestrictSelf sets no_new_privs and puts the calling thread into the
// ruleset's sandbox. Landlock restricts the calling thread only: call it on
// a thread locked with runtime.LockOSThread and exec from that same thread,
// so that the new program starts restricted. On ABI 7 and later it asks the
// kernel to audit-log the denials of the programs executed afterwards.
func RestrictSelf(rulesetFD int, abi int) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	var flags uintptr
	if abi >= 7 {
		flags |= logNewExecOn
	}
	_, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(rulesetFD), flags, 0)
	if errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w (%s)", errno, unix.ErrnoName(errno))
	}
	return nil
}

// Unheld lists what "deny means untouchable" (the BPF LSM semantics) asks
// of a denied path and this ruleset cannot hold, given its ABI. Landlock
// has no right for attribute changes, so those are always listed.
func (rs *Ruleset) Unheld() []string {
	out := []string{
		"chmod, chown and utimes of denied files and of files beneath denied directories (Landlock has no right for attribute changes)",
		"setting or removing extended attributes (and POSIX ACLs) of denied files",
	}
	if rs.Handled&AccessTruncate == 0 {
		out = append(out, fmt.Sprintf("truncate(2) of a denied file (needs Landlock ABI 3; this kernel has %d)", rs.ABI))
	}
	if rs.Handled&AccessResolveUnix == 0 {
		out = append(out, fmt.Sprintf("connecting or sending to a named Unix socket at or beneath a denied path (needs Landlock ABI 9; this kernel has %d)", rs.ABI))
	}
	out = append(out, "mapping a file executable through a descriptor opened before the sandbox started")
	return out
}
