package policy

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// ProcSelf is the baseline's path for the process's own /proc directory.
// It is not resolved here (it would name the resolving process): the
// enforcement resolves it for the command it starts.
const ProcSelf = "/proc/self"

// baselineSpec is the runtime baseline as written, before it is resolved
// on this machine. The order fixes the ids (BaselineFirstID + index): only
// ever append.
var baselineSpec = []struct {
	path   string
	access Access
}{
	// Programs, the loader and libraries. On merged-/usr systems /lib,
	// /bin and /sbin are symlinks into /usr and resolve to it.
	{"/usr/", AccessRead | AccessExec},
	{"/lib/", AccessRead | AccessExec},
	{"/lib64/", AccessRead | AccessExec},
	{"/lib32/", AccessRead | AccessExec},
	{"/libx32/", AccessRead | AccessExec},
	{"/bin/", AccessRead | AccessExec},
	{"/sbin/", AccessRead | AccessExec},
	{"/etc/ld.so.cache", AccessRead},
	{"/etc/ld.so.preload", AccessRead},
	{"/etc/ld.so.conf", AccessRead},
	{"/etc/ld.so.conf.d/", AccessRead},
	// Locale and time zone.
	{"/etc/localtime", AccessRead},
	{"/etc/timezone", AccessRead},
	{"/etc/locale.alias", AccessRead},
	{"/etc/locale.conf", AccessRead},
	{"/etc/default/locale", AccessRead},
	// Certificates and TLS configuration.
	{"/etc/ssl/", AccessRead},
	{"/etc/ca-certificates/", AccessRead},
	{"/etc/pki/", AccessRead},
	// Name service.
	{"/etc/nsswitch.conf", AccessRead},
	{"/etc/host.conf", AccessRead},
	{"/etc/hosts", AccessRead},
	{"/etc/resolv.conf", AccessRead},
	{"/etc/gai.conf", AccessRead},
	{"/etc/services", AccessRead},
	{"/etc/protocols", AccessRead},
	{"/etc/passwd", AccessRead},
	{"/etc/group", AccessRead},
	// Devices every program may use.
	{"/dev/null", AccessRead | AccessWrite},
	{"/dev/zero", AccessRead},
	{"/dev/full", AccessRead | AccessWrite},
	{"/dev/random", AccessRead},
	{"/dev/urandom", AccessRead},
	{"/dev/tty", AccessRead | AccessWrite},
	// The process's own /proc directory, and the system's CPU and memory
	// figures (runtimes size their thread pools and heaps from them).
	{ProcSelf + "/", AccessRead},
	{"/proc/cpuinfo", AccessRead},
	{"/proc/meminfo", AccessRead},
	{"/proc/stat", AccessRead},
	{"/sys/devices/system/cpu/", AccessRead},
	// Python's distribution configuration (Debian's sitecustomize.py in
	// /usr/lib/python3.X is a symlink into /etc/python3.X).
	{"/etc/python3/", AccessRead},
	{"/etc/python3.9/", AccessRead},
	{"/etc/python3.10/", AccessRead},
	{"/etc/python3.11/", AccessRead},
	{"/etc/python3.12/", AccessRead},
	{"/etc/python3.13/", AccessRead},
	{"/etc/python3.14/", AccessRead},
	// The number of capabilities (libcap, and assay's own shim, read it).
	{"/proc/sys/kernel/cap_last_cap", AccessRead},
	// Runtimes size their heaps and thread pools from their cgroup's
	// limits (Node's libuv reads memory.max or memory.limit_in_bytes, the
	// Go runtime cpu.max or cpu.cfs_quota_us) and the huge page size
	// (the Go runtime, at start). Read only: cgroup names and figures,
	// no secrets.
	{"/sys/fs/cgroup/", AccessRead},
	{"/sys/kernel/mm/transparent_hugepage/", AccessRead},
	// The kernel's settings, read only (as in a container's default
	// posture): glibc's malloc reads /proc/sys/vm/overcommit_memory in
	// every threaded program that returns memory (Node.js does, serving),
	// runtimes read net/core/somaxconn and kernel/cap_last_cap. Sysctl
	// files get new inode numbers on every lookup, so BPF LSM can only key
	// this directory (a registered procfs entry), not the files; it
	// covers the cap_last_cap entry above.
	{"/proc/sys/", AccessRead},
}

// BaselineEntry is one runtime-baseline rule as resolved on this machine.
type BaselineEntry struct {
	Rule FileRule
	From string // the path as listed when it was reached through a symlink, else ""
}

// RuntimeBaseline returns the runtime baseline's rules as they apply on
// this machine: each listed path that exists, with symlinks resolved (so
// /lib on a merged-/usr system becomes /usr/lib), without the paths an
// ancestor in the baseline already grants as much. Ids are BaselineFirstID
// and up, Line 0. ProcSelf is kept as it is. The result is computed once
// per process.
func RuntimeBaseline() []FileRule {
	es := runtimeBaseline()
	out := make([]FileRule, len(es))
	for i, e := range es {
		out[i] = e.Rule
	}
	return out
}

// RuntimeBaselineEntries is RuntimeBaseline with where each rule came from.
func RuntimeBaselineEntries() []BaselineEntry {
	return append([]BaselineEntry(nil), runtimeBaseline()...)
}

var runtimeBaseline = sync.OnceValue(func() []BaselineEntry { return resolveBaseline(os.Lstat, filepath.EvalSymlinks) })

func resolveBaseline(lstat func(string) (fs.FileInfo, error), eval func(string) (string, error)) []BaselineEntry {
	var es []BaselineEntry
	for i, b := range baselineSpec {
		p, wantDir, _ := CheckPath(b.path)
		e := BaselineEntry{Rule: FileRule{ID: BaselineFirstID + uint32(i), Path: p, WantDir: wantDir, Access: b.access}}
		if p != ProcSelf {
			fi, err := lstat(p)
			if err != nil {
				continue
			}
			if fi.Mode()&fs.ModeSymlink != 0 {
				real, err := eval(p)
				if err != nil {
					continue
				}
				fi, err = os.Stat(real)
				if err != nil {
					continue
				}
				e.From, e.Rule.Path = p, real
			}
			if wantDir != fi.IsDir() {
				continue
			}
		}
		es = append(es, e)
	}
	// Drop what an ancestor (or the same path) in the baseline already
	// grants as much.
	byPath := map[string]Access{}
	for _, e := range es {
		byPath[e.Rule.Path] |= e.Rule.Access
	}
	var out []BaselineEntry
	kept := map[string]bool{}
	for _, e := range es {
		if kept[e.Rule.Path] || coveredBy(e.Rule, byPath) {
			continue
		}
		kept[e.Rule.Path] = true
		e.Rule.Access = byPath[e.Rule.Path]
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Rule.ID < out[j].Rule.ID })
	return out
}

// coveredBy reports whether a proper ancestor of r in the baseline grants
// at least r's access.
func coveredBy(r FileRule, byPath map[string]Access) bool {
	for cur := r.Path; cur != "/"; {
		i := strings.LastIndexByte(cur, '/')
		cur = cur[:i]
		if cur == "" {
			cur = "/"
		}
		if a, ok := byPath[cur]; ok {
			return a&r.Access == r.Access
		}
	}
	return false
}
