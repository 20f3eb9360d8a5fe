// Package learn builds a least-privilege version 2 policy from what a run
// did (`assay learn`): the files it opened (read, write, create) and
// executed, and the destinations it connected or sent to. Observations
// come from the kernel's events (the trace path names the opened file, see
// internal/kernel/bpf/trace.h; the network audit events name the
// destination); the policy is written by Generate.
package learn

import (
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

// FileUse is what the run did with one path.
type FileUse struct {
	Access  policy.Access
	Dir     bool // opened as a directory (listed)
	Opens   int  // successful opens (and executions)
	Changes int  // changes (unlink, rename, mkdir, chmod, ...) and executable mappings
	Created bool // an open created it
}

// NetKey is one destination address and protocol.
type NetKey struct {
	Addr  netip.Addr
	Proto policy.Proto
}

// NetUse is what the run sent to one address over one protocol.
type NetUse struct {
	Ports map[uint16]int // port -> connects and sends
}

// Recorder collects observations; Observe is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	files map[string]*FileUse
	nets  map[NetKey]*NetUse
	names map[netip.Addr]map[string]bool // addresses a lookup answered, with the names

	// self is assay's own executable: its executions in the sandbox are
	// assay's init and shim, not the command; shim marks their pids.
	self    string
	shim    map[uint32]bool
	started bool // the command was executed

	// Counts of what was not learned.
	FailedOpens int // opens that failed: no file was opened
	Unresolved  int // opens the kernel could not name in full (too long, deleted)
	PathOnly    int // O_PATH opens (no access to the file itself)
}

// NewRecorder returns an empty recorder; self is assay's executable (its
// executions are not the command's).
func NewRecorder(self string) *Recorder {
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	return &Recorder{files: map[string]*FileUse{}, nets: map[NetKey]*NetUse{},
		names: map[netip.Addr]map[string]bool{}, self: self, shim: map[uint32]bool{}}
}

var procPID = regexp.MustCompile(`^/proc/[0-9]+(/|$)`)

// normalize turns a path the kernel named into the path a policy names:
// a process's own /proc/PID is /proc/self (the sandbox has its own PID
// namespace: the numbers change from run to run).
func normalize(p string) string {
	if m := procPID.FindString(p); m != "" {
		return "/proc/self" + p[len(m)-1:]
	}
	return p
}

// Observe records one kernel event.
func (r *Recorder) Observe(e events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Kind {
	case events.KindTraceExec:
		if !e.Source.FromFile() {
			r.Unresolved++
			return
		}
		if e.Path == r.self {
			r.shim[e.PID] = true
			return
		}
		delete(r.shim, e.PID)
		r.started = true
		// rx: the kernel opens the file for reading to execute it
		// (Landlock requires both rights).
		r.file(e.Path, policy.AccessRead|policy.AccessExec, false, false)
	case events.KindTraceOpen:
		if r.shim[e.PID] {
			return
		}
		if e.Ret < 0 {
			r.FailedOpens++
			return
		}
		if !e.Source.FromFile() {
			r.Unresolved++
			return
		}
		if e.Flags&unix.O_PATH != 0 {
			r.PathOnly++
			return
		}
		if e.Flags&fmodeExec != 0 {
			// The kernel's open for execution (BPF LSM observation):
			// the program or its ELF interpreter.
			r.file(normalize(e.Path), policy.AccessRead|policy.AccessExec, false, false)
			return
		}
		var a policy.Access
		switch e.Flags & unix.O_ACCMODE {
		case unix.O_RDONLY:
			a = policy.AccessRead
		case unix.O_WRONLY:
			a = policy.AccessWrite
		default:
			a = policy.AccessRead | policy.AccessWrite
		}
		created := e.Flags&unix.O_CREAT != 0
		if created || e.Flags&unix.O_TRUNC != 0 {
			a |= policy.AccessWrite
		}
		r.file(normalize(e.Path), a, e.Flags&unix.O_DIRECTORY != 0, created)
	case events.KindTraceUnix:
		// Connecting to a Unix socket at a path needs w on it.
		if r.shim[e.PID] {
			return
		}
		if !e.Source.FromFile() {
			r.Unresolved++
			return
		}
		r.file(e.Path, policy.AccessWrite, false, false)
	case events.KindTraceFileOp:
		if r.shim[e.PID] {
			return
		}
		// SourceArg: an absolute path argument (trace path).
		if !e.Source.Complete() && e.Source != events.SourceArg {
			r.Unresolved++
			return
		}
		p := e.Path
		if e.Source != events.SourceFile {
			p = path.Clean(p) // the argument's "." and ".." (lexically)
		}
		r.change(normalize(p), e.Op, e.Target)
	case events.KindConnect, events.KindSendmsg:
		if e.Verdict != events.VerdictAudit && e.Verdict != events.VerdictBlocked {
			return
		}
		k := NetKey{Addr: e.Addr.Unmap(), Proto: policy.Proto(e.Protocol)}
		u := r.nets[k]
		if u == nil {
			u = &NetUse{Ports: map[uint16]int{}}
			r.nets[k] = u
		}
		u.Ports[e.Port]++
	}
}

// fmodeExec is __FMODE_EXEC in an observed open's flags: the kernel
// opened the file to execute it (internal/kernel/bpf/observe.h).
const fmodeExec = 0x20

// change records a change to p (an observed KindTraceFileOp): creating,
// removing or moving a name needs w on the directory (recorded as a name
// created in it, like an open that created a file); changing the file
// (truncate, chmod, chown, the old name of a link) needs w on it; mapping
// it for execution needs x.
func (r *Recorder) change(p string, op events.FileOp, target bool) {
	a, created := policy.AccessWrite, false
	switch op {
	case events.OpMmap:
		a = policy.AccessExec
	case events.OpLink:
		created = target
	case events.OpTruncate, events.OpChmod, events.OpChown, events.OpUtimes, events.OpSetattr,
		events.OpSetxattr, events.OpRemovexattr:
	default: // unlink, rmdir, mkdir, mknod, create, symlink, rename
		created = true
	}
	u := r.use(p)
	u.Access |= a
	u.Created = u.Created || created
	u.Changes++
}

func (r *Recorder) use(p string) *FileUse {
	u := r.files[p]
	if u == nil {
		u = &FileUse{}
		r.files[p] = u
	}
	return u
}

func (r *Recorder) file(p string, a policy.Access, dir, created bool) {
	u := r.use(p)
	u.Access |= a
	u.Dir = u.Dir || dir
	u.Created = u.Created || created
	u.Opens++
}

// Resolved records that a lookup of name answered addrs (assay's resolver
// in observe mode): connections to those addresses are learned by name.
func (r *Recorder) Resolved(name string, addrs []netip.Addr) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range addrs {
		a = a.Unmap()
		if r.names[a] == nil {
			r.names[a] = map[string]bool{}
		}
		r.names[a][name] = true
	}
}

// Files returns the recorded file uses by path (a copy).
func (r *Recorder) Files() map[string]FileUse {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]FileUse, len(r.files))
	for p, u := range r.files {
		out[p] = *u
	}
	return out
}

// Started reports whether the command was executed (assay's own init and
// shim do not count).
func (r *Recorder) Started() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}
