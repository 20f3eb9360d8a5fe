package session

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/resolve"
)

// identifyBatch is how many policy paths are held open at once while the
// kernel reads their identities.
const identifyBatch = 1024

// compileFiles resolves every file rule of p to the key the BPF programs
// compare. Each path is resolved without following symlinks and held open
// (O_PATH|O_NOFOLLOW); the kernel then reports the identity of the very
// inode each descriptor holds (kernel.Identify), made by the same code as
// the hooks. Rules on filesystems where that identity cannot be relied on
// are refused, naming the filesystem (fail closed): see fsSupport. With a
// root (a container's /proc/PID/root), paths are resolved inside it.
func compileFiles(p *policy.Policy, root string) ([]kernel.File, error) {
	return identifyRules(p, p.FileDeny, root)
}

// section names the policy section of a file rule in messages.
func section(p *policy.Policy, f policy.FileRule) string {
	switch {
	case p.Version != 2:
		return "files.deny"
	case f.ID >= policy.BaselineFirstID:
		return "files.baseline (runtime)"
	case f.Access == 0:
		return "files.deny"
	}
	return "files.allow"
}

// identifyRules resolves rules to kernel rules (see compileFiles). Two
// rules on the same inode (a hard link, a bind mount) are an error, except
// that a runtime-baseline rule gives way to the policy's own.
func identifyRules(p *policy.Policy, rules []policy.FileRule, root string) ([]kernel.File, error) {
	var out []kernel.File
	seen := map[[2]uint64]policy.FileRule{}
	for start := 0; start < len(rules); start += identifyBatch {
		batch := rules[start:min(start+identifyBatch, len(rules))]
		hs := make([]*resolve.Handle, 0, len(batch))
		closeAll := func() {
			for _, h := range hs {
				h.Close()
			}
		}
		for _, f := range batch {
			h, err := resolve.OpenIn(root, f.Path)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%s:%d: %s: %w", p.File, f.Line, section(p, f), err)
			}
			hs = append(hs, h)
			if f.WantDir && !h.IsDir {
				closeAll()
				return nil, fmt.Errorf("%s:%d: %s: %s ends with / but is not a directory", p.File, f.Line, section(p, f), f.Path)
			}
		}
		fds := make([]int, len(hs))
		for i, h := range hs {
			fds[i] = h.FD
		}
		ids, err := kernel.Identify(fds)
		closeAll()
		if err != nil {
			return nil, fmt.Errorf("%s: files: %w", p.File, err)
		}
		for i, f := range batch {
			id := ids[i]
			if err := fsSupport(id, hs[i].Identity); err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %s %w", p.File, f.Line, section(p, f), f.Path, err)
			}
			k := [2]uint64{uint64(id.Dev), id.Ino}
			if other, ok := seen[k]; ok {
				if f.ID >= policy.BaselineFirstID {
					continue // the policy's own rule (or an earlier baseline rule) wins
				}
				return nil, fmt.Errorf("%s:%d: %s: %s is the same file as rule %d (a hard link or bind mount); keep one rule", p.File, f.Line, section(p, f), f.Path, other.ID)
			}
			seen[k] = f
			out = append(out, kernel.File{Dev: id.Dev, Ino: id.Ino, ID: f.ID, IsDir: hs[i].IsDir, FS: id.FSType, Access: uint8(f.Access)})
		}
	}
	return out, nil
}

// stableFS are the filesystems whose inode numbers name one file for as
// long as it exists, also after its inode left the cache: the identity a
// rule was resolved to is the one the hooks will see.
var stableFS = map[uint64]string{
	kernel.MagicExt4:     "ext2/ext3/ext4",
	kernel.MagicXFS:      "xfs",
	kernel.MagicBtrfs:    "btrfs",
	kernel.MagicTmpfs:    "tmpfs",
	kernel.MagicOverlay:  "overlay",
	kernel.MagicF2FS:     "f2fs",
	kernel.MagicRamfs:    "ramfs",
	kernel.MagicSquashfs: "squashfs",
	kernel.MagicEROFS:    "erofs",
	kernel.MagicSysfs:    "sysfs",
	// kernfs, as sysfs: a node's inode number is its id, kept while the
	// node exists (the runtime baseline reads cgroup limits there).
	kernel.MagicCgroup2: "cgroup2",
	kernel.MagicCgroup:  "cgroup",
}

// otherFS names common filesystems file rules are refused on, for messages
// made without the kernel's name (CheckPaths).
var otherFS = map[uint64]string{
	0x9fa0: "proc", 0x4d44: "vfat", 0x6969: "nfs", 0x65735546: "fuse", 0xff534d42: "cifs",
	0xfe534d42: "smb2", 0x01021997: "v9fs", 0x1cd1: "devpts", 0x73636673: "securityfs", 0xcafe4a11: "bpf", 0x74726163: "tracefs",
}

// fsSupport returns why the kernel identity id of a policy path (whose
// stat(2) identity is st) cannot carry a rule, or nil.
func fsSupport(id kernel.Ident, st resolve.Identity) error {
	name := id.FSType
	if id.Magic == kernel.MagicProc {
		return procSupport(id.OK && id.Ino != kernel.ProcSelfIno && (st.Ino == 0 || id.Ino == st.Ino))
	}
	if _, ok := stableFS[id.Magic]; !ok {
		return fmt.Errorf("is on a %s filesystem (magic %#x), where assay cannot rely on file identities (inode numbers there are not known to stay the same while the file exists): the rule is refused; supported: ext4, xfs, btrfs, tmpfs, overlay, f2fs, ramfs, squashfs, erofs, sysfs, cgroup2, cgroup", name, id.Magic)
	}
	if !id.OK {
		return fmt.Errorf("is on %s, and the kernel's BTF describes no btrfs types (is /sys/kernel/btf/btrfs there?): the programs could not tell its subvolumes apart, so the rule is refused", name)
	}
	switch id.Magic {
	case kernel.MagicOverlay:
		// The overlay's own inode is the key (see README): its number is
		// the real inode's where the layers share a filesystem or xino is
		// on, and a counter value otherwise, which changes every time the
		// inode is evicted and looked up again.
		if id.Ino != st.Ino {
			return fmt.Errorf("is on an overlay whose inode numbers are not persistent (its layers are on different filesystems and xino is off; kernel inode %d, stat %d): mount it with -o xino=on, or write the rule for the file in its layer", id.Ino, st.Ino)
		}
	default:
		if id.Dev != resolve.KernelDev(st.StatDev) || id.Ino != st.Ino {
			return fmt.Errorf("is on %s, where the kernel's identity of the file (dev %#x ino %d) is not what stat(2) reports (dev %#x ino %d): the rule is refused", name, id.Dev, id.Ino, resolve.KernelDev(st.StatDev), st.Ino)
		}
	}
	return nil
}

// procStable reports whether a procfs inode number is one the kernel
// keeps (bpf/file_rules.h): the root's, or an entry registered with
// proc_register (/proc/cpuinfo, /proc/sys, ...).
func procStable(ino uint64) bool { return ino == 1 || (ino >= 0xF0000000 && ino <= 0xFFFFFFFF) }

// procSupport returns why a procfs path cannot carry a rule, or nil.
func procSupport(stable bool) error {
	if stable {
		return nil
	}
	return fmt.Errorf("is on proc, where only the root and the entries the kernel registers (such as /proc/cpuinfo or /proc/sys/) keep their inode numbers; a process's directory (except /proc/self/ as a whole) and sysctl files under /proc/sys/ get new numbers: the rule is refused (write it for /proc/self/ or a registered directory above it)")
}

// isProcSelfRule reports whether f is the rule on a process's own /proc
// directory (policy.ProcSelf, a directory rule), keyed without resolving.
func isProcSelfRule(f policy.FileRule) bool { return f.Path == policy.ProcSelf && f.WantDir }

// underProcSelf reports whether path is inside /proc/self (which names
// the resolving process, not the sandbox's).
func underProcSelf(path string) bool {
	return path == policy.ProcSelf || strings.HasPrefix(path, policy.ProcSelf+"/")
}

// CheckPaths resolves every file rule of p as Compile does, without the
// kernel (no privilege needed: `assay policy check`): missing paths,
// symlinks, a trailing slash on a file, two paths of one file (a hard link,
// a bind mount) and filesystems whose file identities cannot be relied on
// fail with Compile's messages. What only
// the kernel can tell (an overlay's inode numbers, btrfs's BTF) is checked
// when the rules are loaded.
func CheckPaths(p *policy.Policy) error {
	seen := map[[2]uint64]uint32{}
	rules := p.FileDeny
	if p.Version == 2 {
		rules = p.FileRules()
	}
	skip := map[uint32]bool{}
	for _, f := range UnkeyedBaseline(p) {
		skip[f.ID] = true
	}
	for _, f := range rules {
		sec := section(p, f)
		if skip[f.ID] || (p.Version == 2 && isProcSelfRule(f)) {
			continue
		}
		if p.Version == 2 && underProcSelf(f.Path) {
			return fmt.Errorf("%s:%d: %s: %s: under /proc/self only /proc/self/ as a whole can carry a rule", p.File, f.Line, sec, f.Path)
		}
		h, err := resolve.Open(f.Path)
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %w", p.File, f.Line, sec, err)
		}
		var sfs unix.Statfs_t
		serr := unix.Fstatfs(h.FD, &sfs)
		isDir, ident := h.IsDir, h.Identity
		ino := ident.Ino
		h.Close()
		if f.WantDir && !isDir {
			return fmt.Errorf("%s:%d: %s: %s ends with / but is not a directory", p.File, f.Line, sec, f.Path)
		}
		k := [2]uint64{uint64(ident.Dev), ident.Ino}
		if other, ok := seen[k]; ok {
			if f.ID >= policy.BaselineFirstID {
				continue // the policy's own rule (or an earlier baseline rule) wins
			}
			return fmt.Errorf("%s:%d: %s: %s is the same file as rule %d (a hard link or bind mount); keep one rule", p.File, f.Line, sec, f.Path, other)
		}
		seen[k] = f.ID
		if serr != nil {
			return fmt.Errorf("%s:%d: %s: %s: statfs: %w", p.File, f.Line, sec, f.Path, serr)
		}
		if uint64(sfs.Type) == kernel.MagicProc {
			if err := procSupport(procStable(ino)); err != nil {
				return fmt.Errorf("%s:%d: %s: %s %w", p.File, f.Line, sec, f.Path, err)
			}
			continue
		}
		if _, ok := stableFS[uint64(sfs.Type)]; !ok {
			name, ok := otherFS[uint64(sfs.Type)]
			if !ok {
				name = "unknown"
			}
			id := kernel.Ident{Magic: uint64(sfs.Type), FSType: name, OK: true}
			return fmt.Errorf("%s:%d: %s: %s %w", p.File, f.Line, sec, f.Path, fsSupport(id, resolve.Identity{}))
		}
	}
	return nil
}
