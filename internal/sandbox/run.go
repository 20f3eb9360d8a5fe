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
	"strings"
	"syscall"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/dns"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/mcp"
	"github.com/assaymcp/assay/internal/metrics"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
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

	// Observe, when set, sees every kernel event decoded (`assay learn`);
	// RateLimit is passed to the session (0: the default, negative:
	// unlimited); OnSummary, when set, gets the exit summary.
	Observe   func(events.Event)
	RateLimit int
	OnSummary func(events.Summary)
	// DNSObserve runs assay's resolver in observe mode (`assay learn`):
	// every DNS query of the sandbox goes to it, every name is forwarded,
	// and OnDNSAnswer sees every answer.
	DNSObserve  bool
	OnDNSAnswer func(dns.Answer)
	// Learn observes every file access and change (`assay learn`, with
	// Trace): in the BPF LSM hooks where BPF LSM works (the objects the
	// kernel operates on), else on the tracepoint path.
	Learn bool
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
	lsmSeen  bool                                    // Learn: observed in the LSM hooks
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
	audit := o.Audit || o.Policy.Mode == policy.ModeAudit
	l.env = Probe(o.Policy, audit)
	if l.rules, err = compileForRun(o.Policy, l.env.BPFLSM == nil); err != nil {
		return ExitSetup, err
	}
	if l.rules.FilesV2 {
		if err := addShimRule(&l.rules); err != nil {
			return ExitSetup, err
		}
	}
	l.env.MCP = o.MCP
	l.rep = Decide(o.Policy, l.env)
	if o.Learn {
		if err := kernel.ObserveLSMHere(); err != nil {
			l.rep.Notes = append(l.rep.Notes, "learn: file accesses observed on the trace path (opens named by the kernel; changes by their start directory and argument): "+oneLine(err))
		} else {
			l.lsmSeen = true
			l.rep.Notes = append(l.rep.Notes, "learn: file accesses observed in the BPF LSM hooks (the objects the kernel operates on)")
		}
	}
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
		// Landlock (or nothing) enforces them.
		l.rules.Files, l.rules.FilesV2, l.rules.FilesDefaultDeny = nil, false, false
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
	if l.o.OnSummary != nil {
		l.o.OnSummary(sum)
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
