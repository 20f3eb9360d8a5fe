package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/assaymcp/assay/internal/cgroup"
	"golang.org/x/sys/unix"
)

// # Cgroup names and stale cgroups
//
// `assay run` puts its command into a fresh leaf cgroup named
//
//	assay-<pid>-<start>-<pidns>-<16 hex digits>
//
// where pid is the creating assay's process id, start its start time (field
// 22 of /proc/PID/stat, clock ticks since boot) and pidns the inode of its
// pid namespace. At exit the cgroup is removed. When assay dies without
// cleaning up (SIGKILL, OOM kill, power loss of the process), the
// directory stays, and so may processes in it: the direct child is killed
// by PR_SET_PDEATHSIG, but its descendants are not, and they run without
// the network programs (BPF links are file descriptors of the dead assay
// and were closed with it). Landlock, where used, stays in force: it lives
// in the processes' credentials.
//
// The next `assay run` with the same parent sweeps it: every directory of
// the parent matching the name pattern whose creator is gone (no process
// with that pid and start time in the same pid namespace) is removed with
// cgroup.Remove, which kills the processes still in it. Cgroups of another
// pid namespace are left alone: their creator cannot be checked from here.
// Other cgroups (including "assay-<hex>" ones made by `assay monitor`
// users) are never touched.

var leafName = regexp.MustCompile(`^assay-([0-9]+)-([0-9]+)-([0-9]+)-[0-9a-f]{16}$`)

// identity is a process identity that survives pid reuse.
type identity struct {
	pid   int
	start uint64
	pidns uint64
}

func selfIdentity() (identity, error) {
	pid := os.Getpid()
	start, err := startTime(pid)
	if err != nil {
		return identity{}, err
	}
	ns, err := pidNS()
	if err != nil {
		return identity{}, err
	}
	return identity{pid: pid, start: start, pidns: ns}, nil
}

// prefix is the cgroup name prefix for cgroup.CreateLeaf.
func (id identity) prefix() string {
	return fmt.Sprintf("assay-%d-%d-%d", id.pid, id.start, id.pidns)
}

// startTime reads field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func pidNS() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0, fmt.Errorf("pid namespace: %w", err)
	}
	return st.Ino, nil
}

// alive reports whether the process that created a cgroup still runs.
func (id identity) alive() bool {
	st, err := startTime(id.pid)
	return err == nil && st == id.start
}

// Stale is a leftover cgroup found by SweepStale.
type Stale struct {
	Path    string
	Creator int   // pid of the assay that created it
	PIDs    []int // processes that were still in it (killed)
	Err     error // removal failed
}

// SweepStale removes the stale `assay run` cgroups directly under parent
// (see the comment on leafName) and returns what it found.
func SweepStale(parent cgroup.Scope) ([]Stale, error) {
	self, err := selfIdentity()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(parent.Path)
	if err != nil {
		return nil, fmt.Errorf("listing cgroup %s: %w", parent.Path, err)
	}
	var out []Stale
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		m := leafName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		start, _ := strconv.ParseUint(m[2], 10, 64)
		ns, _ := strconv.ParseUint(m[3], 10, 64)
		creator := identity{pid: pid, start: start, pidns: ns}
		if ns != self.pidns || creator == self || creator.alive() {
			continue
		}
		p := filepath.Join(parent.Path, e.Name())
		s := Stale{Path: p, Creator: pid}
		s.PIDs = treePIDs(p)
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed concurrently
			}
			s.Err = err
		} else {
			s.Err = cgroup.Remove(cgroup.Scope{Path: p, ID: st.Ino})
		}
		out = append(out, s)
	}
	return out, nil
}

// treePIDs lists the processes in the cgroup subtree at dir.
func treePIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		ps, _ := cgroup.Scope{Path: p}.PIDs()
		pids = append(pids, ps...)
		return nil
	})
	return pids
}
