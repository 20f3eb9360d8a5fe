// Package sandbox runs a command under a policy: `assay run`. It creates a
// fresh leaf cgroup, loads and attaches enforcement for it (package
// monitor), and starts the command inside it, contained: as an unprivileged
// user, without capabilities, under no_new_privs, a seccomp filter and
// Landlock, in a PID namespace of its own, with only the descriptors it is
// given (see shim.go for the launch, user.go for the identity).
//
// Threat model: the command and everything it starts are hostile; assay and
// the operator are not.
//
// # Process model
//
//   - The command gets assay's standard streams directly (no copying);
//     assay never writes to stdout. The enforcement report, events and the
//     summary go to stderr (events and summary to --events FILE if given).
//   - assay starts `assay __init` with clone3(CLONE_INTO_CGROUP|CLONE_NEWPID)
//     and PR_SET_PDEATHSIG(SIGKILL): no instruction of the command runs
//     outside the cgroup, and when assay dies, even by SIGKILL, init dies
//     and the kernel kills everything in the namespace (shim.go).
//   - The command stays in assay's process group and session (a terminal
//     keeps working; TIOCSTI and TIOCLINUX are refused by seccomp).
//     SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH sent
//     to assay are forwarded to it (through init); a signal that assay
//     inherited as ignored is neither caught nor forwarded, and stays
//     ignored for the command (`nohup assay run ...`). A terminal's Ctrl-C
//     reaches the command directly (same process group) and also through
//     forwarding, so it may see SIGINT twice.
//   - When the command exits, init exits with its status and the kernel
//     kills whatever is left in the namespace; then the cgroup is removed,
//     every program detached and the summary written.
//
// # Enforcement and fail-closed
//
// Before anything runs, every rule gets a mechanism (see Decide): network
// rules cgroup-bpf; file rules bpf-lsm when a probe program loads and
// attaches, else landlock (enforce mode only), else NOT ENFORCED. The
// report is printed to stderr (and, with --output json, written as a
// {"type":"enforcement"} object first in the event stream). If any rule is
// NOT ENFORCED the command is not started, unless --allow-degraded. Failing
// to attach the network programs is always an error. The report also says
// how the command is contained, and NOT CONTAINED for each containment the
// operator turned off (--user root, --seccomp=off, a --cap other than
// net_bind_service).
//
// # Events
//
//   - Network blocks (or audits) of every process in the cgroup: reported,
//     from the cgroup programs' ring buffer.
//   - File rules enforced with BPF LSM: blocks (or audits) reported.
//   - File rules enforced with Landlock: denials are NOT in the event
//     stream; the command sees EACCES. With --trace the tracepoint path
//     reports every open the command's processes attempt and every program
//     executed. On Landlock ABI 7 and later the kernel audit log records
//     the denials when audit is enabled.
//
// # Exit status
//
// The command's exit status; 128+N when it was killed by signal N. When
// assay itself fails before the command runs: 125 (usage, policy, kernel or
// setup error, or a rule that cannot be enforced), 126 (the command cannot
// be executed), 127 (the command was not found) - as env(1) and timeout(1)
// do. Errors while cleaning up after the command are printed but do not
// change the status; neither does a failure to write events (e.g. --events
// on a full disk): it is reported on stderr as soon as it happens (the
// command keeps running, enforced, and later events are lost) and again at
// exit, where the summary then goes to stderr.
package sandbox

import (
	"errors"
	"fmt"
	"io"
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
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/mcp"
	"github.com/assaymcp/assay/internal/metrics"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/seccomp"
	"github.com/assaymcp/assay/internal/session"
	"golang.org/x/sys/unix"
)

// Exit statuses of assay's own failures.
const (
	ExitSetup       = 125
	ExitCannotExec  = 126
	ExitNotFound    = 127
	ShimCommand     = "__exec" // the hidden subcommand of the shim
	signalExitShift = 128
)

// Options describe one `assay run`.
type Options struct {
	Policy        *policy.Policy
	Audit         bool
	Trace         bool
	CgroupParent  string // "" for the cgroup2 mount root
	AllowDegraded bool
	Format        events.Format
	RingBytes     int // 0 for the default

	// Containment. User is --user USER[:GROUP] ("" for the default, see
	// DefaultUser, which reads Getenv: os.Getenv when nil). Caps are the
	// --cap names kept; NoSeccomp is --seccomp=off; PassFDs the --pass-fd
	// descriptors.
	User      string
	Getenv    func(string) string
	Caps      []string
	NoSeccomp bool
	PassFDs   []int
	Limits    Limits

	// Events receives events and the summary (and the report, in JSON);
	// Log the report (in text) and messages.
	Events io.Writer
	Log    io.Writer

	// The command and its standard streams.
	Argv           []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// MCP (`--mcp`): relay the command's stdin and stdout (an MCP stdio
	// server) instead of handing it Stdin and Stdout; see mcp.go.
	MCP bool
	// OnToolCall and OnToolDecision, when set, see every tools/call's
	// outcome and every tool rule decision (metrics).
	OnToolCall     func(tool, outcome string)
	OnToolDecision func(mcp.Decision)
	// Metrics, when set, counts events, ring buffers and tool calls
	// (--metrics).
	Metrics *metrics.Metrics
}

// forwarded are the signals passed on to the command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// Probe finds out what the kernel offers for the file rules of p, and
// Landlock's ABI for scoping.
func Probe(p *policy.Policy, audit bool) Env {
	env := Env{Audit: audit}
	env.LandlockABI, env.Landlock = landlock.ABI()
	if !p.HasFileRules() {
		return env
	}
	env.BPFLSM = kernel.ProbeLSM()
	return env
}

// launch is one `assay run` on its way: prepare fills it, launch starts
// the command, supervise waits for it, teardown cleans up.
type launch struct {
	o        Options
	path     string
	rules    kernel.Rules
	env      Env
	rep      Report
	cfg      shimConfig
	rs       *landlock.Ruleset
	judge    func(events.Event) (events.Event, bool) // policy v2 file events from traced opens
	leaf     cgroup.Scope
	sess     *session.Session
	cmd      *exec.Cmd
	control  *os.File // write end: signals for init
	sigs     chan os.Signal
	pipes    chan os.Signal
	writeErr chan error
	relay    *mcpRelay // --mcp
	watch    *watchdog
}

// Run runs the command and returns assay's exit status. Failures are
// printed to o.Log as one "assay: ..." line.
func Run(o Options) int {
	l := &launch{o: o}
	defer l.release()
	if status, err := l.prepare(); err != nil {
		return l.fail(status, err)
	}
	if status, err := l.start(); err != nil {
		l.teardown()
		return l.fail(status, err)
	}
	status := l.supervise()
	l.teardown()
	return status
}

func (l *launch) fail(status int, err error) int {
	fmt.Fprintln(l.o.Log, "assay: "+strings.TrimSpace(err.Error()))
	return status
}

// prepare checks everything that can be checked before a cgroup exists,
// then creates the cgroup: the policy (compiled once), the kernel's
// mechanisms, the containment, the Landlock ruleset.
func (l *launch) prepare() (int, error) {
	o := l.o
	if len(o.Argv) == 0 {
		return ExitSetup, errors.New("no command: give it after --, e.g. assay run -- my-mcp-server")
	}
	path, err := exec.LookPath(o.Argv[0])
	if err != nil {
		status := ExitNotFound
		if errors.Is(err, fs.ErrPermission) {
			status = ExitCannotExec
		}
		return status, err
	}
	l.path = path
	if err := session.CheckPrivileges(); err != nil {
		return ExitSetup, err
	}
	// Resolve every file rule now, once: a rule is never silently dropped,
	// and what is checked is what is loaded.
	if l.rules, err = compileForRun(o.Policy); err != nil {
		return ExitSetup, err
	}
	audit := o.Audit || o.Policy.Mode == policy.ModeAudit
	l.env = Probe(o.Policy, audit)
	l.env.MCP = o.MCP
	l.rep = Decide(o.Policy, l.env)
	if err := l.contain(); err != nil {
		return ExitSetup, err
	}
	if o.Policy.Version == 2 && (l.rep.Files == MechLandlock || l.rep.Files == MechTraceAudit) {
		// Landlock's refusals (or, in audit mode, what the policy would
		// refuse) are seen in the traced opens.
		l.judge = judgeV2(o.Policy, l.rep.Files == MechTraceAudit)
	}
	if l.rep.Files == MechLandlock && o.Policy.Version == 2 {
		// Built before the check: a rule Landlock cannot enforce exactly
		// is NOT ENFORCED.
		if l.rs, l.cfg.ProcRules, err = landlockV2(&l.rep, o.Policy, l.env.LandlockABI); err != nil {
			return ExitSetup, err
		}
	}
	if err := l.rep.Check(o.AllowDegraded); err != nil {
		o.writeReport(l.rep, "enforcement report for "+o.Policy.File+" ("+o.Policy.Summary()+"):")
		return ExitSetup, err
	}
	if l.rep.Files == MechLandlock && o.Policy.Version != 2 {
		var paths []string
		for _, f := range o.Policy.FileDeny {
			paths = append(paths, f.Path)
		}
		if l.rs, err = landlock.Deny(l.env.LandlockABI, paths); err != nil {
			return ExitSetup, err
		}
		l.rep.Notes = append(l.rep.Notes, landlockNotes(l.rs)...)
	}
	if l.rep.Files != MechBPFLSM {
		l.rules.Files = nil // Landlock (or nothing) enforces them
	}
	// The policy's limits, each overridden by its flag.
	pl := o.Policy.Limits
	if l.o.Limits.Memory == 0 {
		l.o.Limits.Memory = pl.Memory
	}
	if l.o.Limits.Pids == 0 {
		l.o.Limits.Pids = pl.Pids
	}
	if l.o.Limits.CPU == 0 {
		l.o.Limits.CPU = pl.CPU
	}
	o = l.o
	if err := o.Limits.Check(); err != nil {
		return ExitSetup, err
	}
	var parent cgroup.Scope
	if o.CgroupParent == "" {
		parent, err = cgroup.Root()
	} else {
		parent, err = cgroup.Resolve(o.CgroupParent)
	}
	if err != nil {
		return ExitSetup, err
	}
	stale, err := SweepStale(parent)
	if err != nil {
		return ExitSetup, err
	}
	for _, s := range stale {
		msg := fmt.Sprintf("assay: removed stale cgroup %s (its assay, pid %d, is gone; killed %d leftover process(es))", s.Path, s.Creator, len(s.PIDs))
		if s.Err != nil {
			msg = fmt.Sprintf("assay: stale cgroup %s (its assay, pid %d, is gone) could not be removed: %v", s.Path, s.Creator, s.Err)
		}
		fmt.Fprintln(o.Log, msg)
	}
	if err := o.Limits.Enable(parent); err != nil {
		return ExitSetup, err
	}
	self, err := selfIdentity()
	if err != nil {
		return ExitSetup, err
	}
	if l.leaf, err = cgroup.CreateLeaf(parent.Path, self.prefix()); err != nil {
		return ExitSetup, err
	}
	if err := o.Limits.Apply(l.leaf); err != nil {
		l.removeLeaf()
		return ExitSetup, err
	}
	l.rep.Contain = append(l.rep.Contain, o.Limits.Describe()...)
	return 0, nil
}

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
		Judge: l.judge, QuietTrace: l.judge != nil && !o.Trace,
		RingBytes: o.RingBytes, Out: o.Events, Format: o.Format,
		OnWriteErr: func(err error) { l.writeErr <- err },
		// The session is stopped only after the cgroup was removed (or
		// never held a task). Should removal fail, records in flight at
		// detach may be counted but not delivered.
		ScopeEmpty: true,
		MCP:        l.relay.context(),
		Metrics:    o.Metrics,
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

// supervise forwards signals and reports a failed event write until the
// command (init) exits; it returns the command's status.
func (l *launch) supervise() int {
	defer runtime.UnlockOSThread()
	done := make(chan error, 1)
	go func() { done <- l.cmd.Wait() }()
	for {
		select {
		case s := <-l.sigs:
			// One byte per signal; init passes it on to the command.
			_, _ = l.control.Write([]byte{byte(s.(syscall.Signal))})
		case werr := <-l.writeErr:
			fmt.Fprintf(l.o.Log, "assay: writing events failed (%v): later events are lost; %s stays enforced until it exits\n", werr, l.o.Argv[0])
		case err := <-done:
			return exitStatus(l.cmd.ProcessState, err)
		}
	}
}

// teardown removes the cgroup (killing what is left in it), stops the
// session and writes the summary.
func (l *launch) teardown() {
	if err := l.removeLeaf(); err != nil {
		fmt.Fprintln(l.o.Log, "assay: "+err.Error())
	}
	l.relay.wait(l.o.Log)
	if l.watch != nil {
		if err := l.watch.stop(); err != nil {
			fmt.Fprintln(l.o.Log, "assay: "+err.Error())
		}
		l.watch = nil
	}
	if l.sess == nil {
		return
	}
	sum, err := l.sess.Stop()
	if err != nil {
		fmt.Fprintln(l.o.Log, "assay: stopping: "+err.Error())
	}
	// After a failed write the events go nowhere: the summary goes to the
	// log instead, so that the counts are never lost with them.
	out := l.o.Events
	if werr := l.sess.WriteErr(); werr != nil {
		fmt.Fprintln(l.o.Log, "assay: writing events failed: "+werr.Error()+"; the summary follows")
		out = l.o.Log
	}
	if l.o.Format == events.JSON {
		sum.WriteJSON(out)
	} else {
		sum.WriteText(out)
	}
	l.sess = nil
}

func (l *launch) removeLeaf() error {
	if l.leaf.Path == "" {
		return nil
	}
	err := cgroup.Remove(l.leaf)
	l.leaf = cgroup.Scope{}
	return err
}

// release frees what prepare and start hold.
func (l *launch) release() {
	if l.rs != nil {
		l.rs.Close()
	}
	if l.control != nil {
		l.control.Close()
	}
	l.relay.abort()
	if l.sigs != nil {
		signal.Stop(l.sigs)
	}
	if l.pipes != nil {
		signal.Stop(l.pipes)
	}
}

// writeReport writes the enforcement report: as text lines to the log, or,
// with --output json, as the first object of the event stream (and nothing
// on the log, where every line is JSON too).
func (o Options) writeReport(rep Report, header string) {
	if o.Format == events.JSON {
		rep.WriteJSON(o.Events)
		return
	}
	rep.WriteText(o.Log, header)
}

func exitStatus(ps *os.ProcessState, err error) int {
	if ps == nil {
		return ExitSetup
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return signalExitShift + int(ws.Signal())
	}
	return ps.ExitCode()
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
