package landlock

// # Version 2 policies: the allow model
//
// [Allow] builds a ruleset from rules that each give a path an access
// (a combination of read, write and execute; none for a deny rule), where
// the nearest rule on the way up from a file decides. Landlock grants are
// inherited by a whole subtree and add up, so a rule with at least the
// rights of the rule above it maps directly: a grant on its path. A rule
// with fewer rights than the rule above it (a "hole", such as a denied file
// in a readable tree) is enforced by taking the rights it lacks off every
// grant above it and granting them again to every other entry of the
// directories on the way down (its siblings, and theirs). That is exact
// only when
//
//   - the rights taken off are file rights (read a file, execute), not
//     directory ones (listing a directory, creating, removing or renaming
//     in it): the directories on the way down need those themselves and
//     Landlock cannot give them without giving them to the hole; and
//   - nothing in the trees on the way may be written: the workload could
//     otherwise create entries there (which get only the reduced rights),
//     and delete or replace the hole itself.
//
// Otherwise the rule is reported as not enforced (the caller refuses to
// start unless --allow-degraded), and the rights above it reach it: a rule
// is never approximated by restricting its parents.
//
// Landlock controls neither attribute changes (chmod, chown, utimes) nor
// mmap(PROT_EXEC) of a readable file; see the package documentation for
// what else it cannot see.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Access bits of a rule (the same values as policy.Access).
const (
	Read  = 1
	Write = 2
	Exec  = 4
)

// The rights of each access, before masking with the handled rights.
const (
	readRights  = AccessReadFile | AccessReadDir
	writeRights = AccessWriteFile | AccessTruncate | AccessRemoveDir | AccessRemoveFile | AccessMakeChar |
		AccessMakeDir | AccessMakeReg | AccessMakeSock | AccessMakeFifo | AccessMakeBlock | AccessMakeSym |
		AccessRefer | AccessIoctlDev | AccessResolveUnix
	execRights = AccessExecute
	// dirRights only make sense on directories.
	dirRights = AccessReadDir | AccessRemoveDir | AccessRemoveFile | AccessMakeChar | AccessMakeDir | AccessMakeReg |
		AccessMakeSock | AccessMakeFifo | AccessMakeBlock | AccessMakeSym | AccessRefer
)

// Rights returns the Landlock rights of an access (Read|Write|Exec bits)
// within handled.
func Rights(access int, handled uint64) uint64 {
	var r uint64
	if access&Read != 0 {
		r |= readRights
	}
	if access&Write != 0 {
		r |= writeRights
	}
	if access&Exec != 0 {
		r |= execRights
	}
	return r & handled
}

// PathRule is one rule of the allow model.
type PathRule struct {
	Path   string // absolute and clean; it and its ancestors must not be symlinks
	Access int    // Read|Write|Exec; 0 denies
	ID     uint32
}

// RuleStatus says whether a rule is enforced exactly.
type RuleStatus struct {
	ID       uint32
	Path     string
	Enforced bool
	Reason   string // why not, when not
}

// AllowResult is what Allow built.
type AllowResult struct {
	*Ruleset
	Status []RuleStatus // one per input rule, in input order
	// Split lists the directories whose entries were granted one by one
	// to enforce a rule with fewer rights inside a tree.
	Split []string
}

// Allow builds a ruleset for the allow model: def is the access where no
// rule applies, rules the rules (one per path). See the section above for
// what is exact; a rule that is not is enforced with the rights of the
// rule above it and reported in Status. Every path must exist.
func Allow(abi int, def int, rules []PathRule) (*AllowResult, error) {
	if abi < 1 {
		return nil, fmt.Errorf("%w: ABI %d", ErrUnavailable, abi)
	}
	if abi > MaxKnownABI {
		abi = MaxKnownABI
	}
	handled := HandledFS(abi)
	b := &allowBuilder{handled: handled, nodes: map[string]*allowNode{}}
	root := &allowNode{path: "/", dir: true, access: def, rule: -1}
	b.nodes["/"] = root
	for i, r := range rules {
		if !filepath.IsAbs(r.Path) || filepath.Clean(r.Path) != r.Path {
			return nil, fmt.Errorf("landlock: path %q is not absolute and clean", r.Path)
		}
		if n, dup := b.nodes[r.Path]; dup && n.rule >= 0 {
			return nil, fmt.Errorf("landlock: two rules for %s", r.Path)
		}
		if r.Path == "/" {
			root.access, root.rule = r.Access, i
			continue
		}
		dir, err := isDir(r.Path)
		if err != nil {
			return nil, err
		}
		n := &allowNode{path: r.Path, dir: dir, access: r.Access, rule: i}
		b.nodes[r.Path] = n
	}
	res := &AllowResult{Status: make([]RuleStatus, len(rules))}
	for i, r := range rules {
		res.Status[i] = RuleStatus{ID: r.ID, Path: r.Path, Enforced: true}
	}
	// Top-down: each rule against the effective rights of the rule above.
	paths := make([]string, 0, len(b.nodes))
	for p := range b.nodes {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		return depth(paths[i]) < depth(paths[j]) || (depth(paths[i]) == depth(paths[j]) && paths[i] < paths[j])
	})
	root.eff = Rights(root.access, handled)
	root.writable = root.access&Write != 0
	grants := map[string]uint64{}
	if root.eff != 0 {
		grants["/"] = root.eff
	}
	var holes []hole
	for _, p := range paths {
		n := b.nodes[p]
		if n == root {
			continue
		}
		parent := b.parentRule(p)
		own := Rights(n.access, handled)
		if !n.dir {
			own &= fileRights
		}
		inherited := parent.eff
		if !n.dir {
			inherited &= fileRights
		}
		missing := inherited &^ own
		n.eff = own
		n.writable = parent.writable || n.access&Write != 0
		if missing != 0 {
			reason := ""
			switch {
			case parent.writable:
				reason = fmt.Sprintf("Landlock cannot take rights away inside a writable tree (%s): the workload could create entries there, or remove or replace %s", parent.path, p)
			case missing&dirRights != 0:
				reason = fmt.Sprintf("Landlock cannot let the directories above %s be listed without letting %s be listed too", p, p)
			}
			if reason != "" {
				res.Status[n.rule].Enforced = false
				res.Status[n.rule].Reason = reason
				n.eff |= missing
				n.writable = parent.writable
			} else {
				holes = append(holes, hole{path: p, missing: missing})
			}
		}
		if own != 0 {
			grants[p] = own
		}
	}
	split, err := b.cut(grants, holes)
	if err != nil {
		return nil, err
	}
	res.Split = split

	f, err := createRuleset(handled)
	if err != nil {
		return nil, err
	}
	rs := &Ruleset{f: f, ABI: abi, Handled: handled}
	res.Ruleset = rs
	gpaths := make([]string, 0, len(grants))
	for p := range grants {
		gpaths = append(gpaths, p)
	}
	sort.Strings(gpaths)
	for _, p := range gpaths {
		if err := rs.addPath(p, grants[p]); err != nil {
			rs.Close()
			return nil, err
		}
	}
	return res, nil
}

type allowNode struct {
	path     string
	dir      bool
	access   int
	rule     int    // index in the input, -1 for the default at /
	eff      uint64 // the rights the rule's region ends up with
	writable bool   // this region or a region above it may be written
}

type hole struct {
	path    string
	missing uint64
}

type allowBuilder struct {
	handled uint64
	nodes   map[string]*allowNode
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

func parentDir(p string) string {
	d := filepath.Dir(p)
	return d
}

// parentRule returns the nearest rule strictly above p (the root at worst).
func (b *allowBuilder) parentRule(p string) *allowNode {
	for cur := parentDir(p); ; cur = parentDir(cur) {
		if n, ok := b.nodes[cur]; ok {
			return n
		}
		if cur == "/" {
			return b.nodes["/"]
		}
	}
}

// cut takes each hole's missing rights off the grants above it and gives
// them back to the other entries on the way down, until no grant above a
// hole carries what it lacks. It returns the directories split.
func (b *allowBuilder) cut(grants map[string]uint64, holes []hole) ([]string, error) {
	splitSet := map[string]bool{}
	for changed := true; changed; {
		changed = false
		for _, h := range holes {
			for _, x := range ancestors(h.path) {
				g := grants[x]
				c := g & h.missing
				if c == 0 {
					continue
				}
				changed = true
				if g &^= c; g == 0 {
					delete(grants, x)
				} else {
					grants[x] = g
				}
				// Give c back below x, except towards the hole, down to
				// the next rule (which has its own grant).
				for y := x; ; {
					next := childToward(y, h.path)
					splitSet[y] = true
					if err := b.grantEntries(grants, y, next, c); err != nil {
						return nil, err
					}
					if next == h.path {
						break
					}
					if _, isRule := b.nodes[next]; isRule {
						break
					}
					y = next
				}
			}
		}
	}
	var out []string
	for p := range splitSet {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// ancestors returns the proper ancestors of p, from / down.
func ancestors(p string) []string {
	return ancestorsOf(p)
}

// childToward returns the entry of dir on the way to p (beneath dir).
func childToward(dir, p string) string {
	rest := strings.TrimPrefix(p, dir)
	rest = strings.TrimPrefix(rest, "/")
	first, _, _ := strings.Cut(rest, "/")
	if dir == "/" {
		return "/" + first
	}
	return dir + "/" + first
}

// grantEntries adds rights c to every entry of dir except skip and the
// entries that are rules (they have their own grant). Symlinks get
// nothing (what they point to is reached by its own path).
func (b *allowBuilder) grantEntries(grants map[string]uint64, dir, skip string, c uint64) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("landlock: list %s: %w", dir, err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			child := filepath.Join(dir, name)
			if child == skip {
				continue
			}
			if _, isRule := b.nodes[child]; isRule {
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(child, &st); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return fmt.Errorf("landlock: stat %s: %w", child, err)
			}
			r := c
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFLNK:
				continue
			case unix.S_IFDIR:
			default:
				r &= fileRights
			}
			if r != 0 {
				grants[child] |= r
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

func isDir(p string) (bool, error) {
	fd, err := openNoFollow(p, unix.O_PATH)
	if err != nil {
		return false, fmt.Errorf("landlock: %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("landlock: stat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return false, fmt.Errorf("landlock: %s is a symlink: write the path it points to", p)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// addPath adds a rule granting rights on p (opened without following
// symlinks). A non-directory gets only the rights that apply to files.
func (r *Ruleset) addPath(p string, rights uint64) error {
	fd, err := openNoFollow(p, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("landlock: %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock: stat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		rights &= fileRights
	}
	if rights == 0 {
		return nil
	}
	if err := r.add(fd, rights); err != nil {
		if err == unix.EBADFD {
			return nil // an internal file system object: no rule possible, not restricted
		}
		return fmt.Errorf("landlock: add rule for %s: %w (%s)", p, err, unix.ErrnoName(err.(unix.Errno)))
	}
	return nil
}

// AddProc adds a rule granting access on a path under /proc to the
// ruleset on descriptor fd, resolved by the calling process: the shim
// calls it just before it restricts itself, inside the sandbox's own PID
// namespace and /proc, so that /proc/self names the process that then
// executes the command. A path that does not exist is skipped.
func AddProc(fd int, path string, access int, abi int) error {
	if abi > MaxKnownABI {
		abi = MaxKnownABI
	}
	rights := Rights(access, HandledFS(abi))
	if path == "/proc/self" {
		path = fmt.Sprintf("/proc/%d", os.Getpid())
	}
	if !strings.HasPrefix(path, "/proc/") {
		return fmt.Errorf("landlock: %s is not under /proc", path)
	}
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return fmt.Errorf("landlock: open %s: %w", path, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return fmt.Errorf("landlock: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		rights &= fileRights
	}
	if rights == 0 {
		return nil
	}
	attr := pathBeneathAttr{allowed: rights, parentFD: int32(pfd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(fd), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("landlock: add rule for %s: %w (%s)", path, errno, unix.ErrnoName(errno))
	}
	return nil
}
