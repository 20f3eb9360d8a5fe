package sandbox

// The launch: the command's containment (contain) and starting enforcement
// and the command (start); see run.go for the whole sequence.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/seccomp"
	"github.com/assaymcp/assay/internal/session"
	"golang.org/x/sys/unix"
)

// contain decides the command's identity, capabilities, filter and
// descriptors, and records them in the report.
func (l *launch) contain() error {
	o := l.o
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var cred Cred
	var err error
	if o.User != "" {
		cred, err = ParseUser(o.User)
	} else {
		var note string
		cred, note, err = DefaultUser(getenv)
		if note != "" {
			fmt.Fprintf(o.Log, "assay: %s %s\n", o.Argv[0], note)
		}
	}
	if err != nil {
		return err
	}
	var caps []int
	for _, name := range o.Caps {
		c, err := ParseCap(name)
		if err != nil {
			return err
		}
		caps = append(caps, c)
	}
	for _, fd := range o.PassFDs {
		if fd < 3 {
			return fmt.Errorf("--pass-fd %d: 0, 1 and 2 are always passed", fd)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("--pass-fd %d: descriptor %d is not open in assay: %w", fd, fd, err)
		}
	}
	l.cfg = shimConfig{Cred: cred, Caps: caps, Seccomp: !o.NoSeccomp, PassFDs: o.PassFDs, RulesetFD: -1, JSON: o.Format == events.JSON}
	r := &l.rep
	r.User = cred.String()
	capText := "no capabilities"
	if len(caps) > 0 {
		var names []string
		for _, c := range caps {
			names = append(names, CapName(c))
		}
		capText = "capabilities " + strings.Join(names, ",") + " only"
	}
	fds := "descriptors 0, 1, 2"
	for _, fd := range o.PassFDs {
		fds += ", " + strconv.Itoa(fd)
	}
	r.Contain = append(r.Contain, "runs as "+cred.String()+"; "+capText+"; no_new_privs; "+fds+"; own PID namespace (killed with assay)")
	if cred.Root() {
		r.NotContained = append(r.NotContained, "runs as root (--user root): it owns root's files (including cgroup.procs, so it can leave its cgroup), can signal root's processes outside Landlock's scope and read files through root-run helpers such as core_pattern")
	}
	for _, c := range caps {
		if !harmlessCaps[c] {
			r.NotContained = append(r.NotContained, "keeps "+CapName(c)+" (--cap): the kernel checks it instead of the rules assay relies on")
		}
	}
	if o.NoSeccomp {
		r.NotContained = append(r.NotContained, "--seccomp=off: bpf, ptrace, pidfd_getfd, mount, user namespaces, keyrings, TIOCSTI and the other calls of the filter are open to it")
	} else {
		var names []string
		for _, rule := range seccomp.Refused {
			names = append(names, rule.Names...)
		}
		r.Contain = append(r.Contain, fmt.Sprintf("seccomp: %d system calls refused or restricted (%s); other architectures' entry points refused", len(names), strings.Join(names, " ")))
	}
	if l.env.LandlockABI >= 6 {
		l.cfg.ScopeABI = l.env.LandlockABI
		r.Contain = append(r.Contain, "landlock scope: no abstract Unix socket and no signal outside the sandbox")
	} else {
		why := "the kernel's Landlock is older"
		if l.env.Landlock != nil {
			why = oneLine(l.env.Landlock)
		}
		r.Notes = append(r.Notes, fmt.Sprintf("landlock scoping unavailable (ABI %d, needs 6): abstract Unix sockets outside the sandbox stay reachable (%s); signals stay confined by the PID namespace", l.env.LandlockABI, why))
	}
	return nil
}

// start starts enforcement, prints the report and starts the command.
func (l *launch) start() (int, error) {
	o := l.o
	// Catch the forwarded signals before anything runs in the cgroup, so
	// none is lost; inherited "ignore" dispositions are kept.
	l.sigs = make(chan os.Signal, 16)
	for _, s := range forwarded {
		if !signal.Ignored(s) {
			signal.Notify(l.sigs, s)
			l.cfg.Default = append(l.cfg.Default, int(s.(syscall.Signal)))
		}
	}
	// A closed stderr must not kill assay before it cleans up: with SIGPIPE
	// caught, writes fail with EPIPE instead. (Caught, not ignored: an
	// ignored disposition would be inherited by the command.)
	l.pipes = make(chan os.Signal, 1)
	if !signal.Ignored(syscall.SIGPIPE) {
		signal.Notify(l.pipes, syscall.SIGPIPE)
	}
	l.writeErr = make(chan error, 1)
	var err error
	// The session gets the file rules only when BPF LSM enforces them.
	kp := *o.Policy
	kp.ToolDeny, kp.ToolAllow, kp.ToolAllowList = nil, nil, false // the relay's, not the kernel's
	if l.rep.Files != MechBPFLSM {
		withoutFiles(&kp)
	}
	if o.MCP {
		if l.relay, err = newMCPRelay(o); err != nil {
			return ExitSetup, err
		}
	}
	l.sess, err = session.Start(session.Options{
		Policy: &kp, Rules: &l.rules, Audit: o.Audit, Scopes: []cgroup.Scope{l.leaf}, Trace: o.Trace || l.judge != nil,
		ObserveChanges: o.Learn && !l.lsmSeen, ObserveLSM: l.lsmSeen,
		Judge: l.judge, QuietTrace: l.judge != nil && !o.Trace,
		RingBytes: o.RingBytes, Out: o.Events, Format: o.Format,
		OnWriteErr: func(err error) { l.writeErr <- err },
		// The session is stopped only after the cgroup was removed (or
		// never held a task). Should removal fail, records in flight at
		// detach may be counted but not delivered.
		ScopeEmpty: true,
		MCP:        l.relay.context(),
		Metrics:    o.Metrics,
		Observe:    o.Observe,
		RateLimit:  o.RateLimit,
		DNSObserve: o.DNSObserve, OnDNSAnswer: o.OnDNSAnswer,
	})
	if err != nil {
		return ExitSetup, err
	}
	// The watchdog holds the links until the sandbox is empty, should
	// assay die (watch.go).
	fds, ok := l.sess.LinkFDs()
	if !ok {
		return ExitSetup, errors.New("the kernel attached a program without a BPF link: the enforcement could not outlive assay; Linux 5.7 or later is needed")
	}
	if l.watch, err = startWatchdog(l.leaf, fds); err != nil {
		return ExitSetup, err
	}
	l.rep.Cgroup, l.rep.CgroupID = l.leaf.Path, l.leaf.ID
	o.writeReport(l.rep, fmt.Sprintf("enforcement report for %s (%s) in cgroup %s:", o.Policy.File, o.Policy.Summary(), l.leaf.Path))

	// Descriptors of init: the --pass-fd ones at their own numbers, then
	// the Landlock ruleset and the control pipe above them.
	top := 2
	for _, fd := range o.PassFDs {
		top = max(top, fd)
	}
	extra := make([]*os.File, top-2)
	for _, fd := range o.PassFDs {
		extra[fd-3] = os.NewFile(uintptr(fd), "pass-fd-"+strconv.Itoa(fd))
	}
	if l.rs != nil {
		l.cfg.RulesetFD = 3 + len(extra)
		extra = append(extra, l.rs.File())
	}
	cr, cw, err := os.Pipe()
	if err != nil {
		return ExitSetup, err
	}
	defer cr.Close()
	l.control = cw
	l.cfg.ControlFD = 3 + len(extra)
	extra = append(extra, cr)
	cfg, err := jsonConfig(l.cfg)
	if err != nil {
		return ExitSetup, err
	}
	l.cmd = &exec.Cmd{
		// The shim is this very binary: /proc/self/exe cannot be swapped
		// under us by a rename of the file.
		Path:  "/proc/self/exe",
		Args:  append([]string{"assay", InitCommand, cfg, l.path}, o.Argv...),
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		ExtraFiles: extra,
	}
	l.relay.attach(l.cmd)
	cgfd, err := l.leaf.Open()
	if err != nil {
		return ExitSetup, err
	}
	defer cgfd.Close()
	l.cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true, CgroupFD: int(cgfd.Fd()),
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	// PDEATHSIG fires when the thread that forked exits: keep this
	// goroutine on its thread until init is reaped (supervise unlocks).
	runtime.LockOSThread()
	if err := l.cmd.Start(); err != nil {
		runtime.UnlockOSThread()
		status := ExitCannotExec
		if errors.Is(err, fs.ErrNotExist) {
			status = ExitNotFound
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w (starting a process directly in a cgroup needs clone3 with CLONE_INTO_CGROUP, Linux 5.7 or later)", err)
			status = ExitSetup
		}
		return status, fmt.Errorf("cannot start %s: %w", o.Argv[0], err)
	}
	if l.rs != nil {
		l.rs.Close() // init has its own copy
		l.rs = nil
	}
	l.relay.start(l.sess, l.cmd.Process.Pid, l.leaf.ID, o.OnToolDecision)
	return 0, nil
}

func landlockNotes(rs *landlock.Ruleset) []string {
	notes := []string{
		fmt.Sprintf("landlock: ABI %d, %d rules: everything is allowed except at and beneath the denied paths", rs.ABI, rs.Rules),
		"landlock: read-only, listable directories (nothing can be created, removed or renamed in them): " + strings.Join(rs.Ancestors, " "),
		"landlock: names inside denied directories stay listable; rules follow paths, not inodes (hard links and bind mounts elsewhere stay accessible)",
	}
	for _, w := range rs.Warnings {
		notes = append(notes, "landlock: warning: "+w)
	}
	for _, u := range rs.Unheld() {
		notes = append(notes, "landlock: cannot hold: "+u)
	}
	notes = append(notes, "landlock: denials are answered with EACCES and are not in assay's event stream (with --trace the open attempts are); the kernel audit log records them when audit is enabled")
	return notes
}
