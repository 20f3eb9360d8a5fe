// Package sandbox runs a command under a policy: `assay run`. It creates a
// fresh leaf cgroup, loads and attaches enforcement for it (package
// monitor), and starts the command directly inside it with
// clone3(CLONE_INTO_CGROUP), so that no instruction of the command runs
// unenforced. When BPF LSM is unusable, file rules are enforced with
// Landlock (package landlock) by a shim: assay starts itself (`assay
// __exec`) in the cgroup, the shim restricts itself and execs the command.
//
// # Process model
//
//   - The command gets assay's standard streams directly (no copying);
//     assay never writes to stdout. The enforcement report, events and the
//     summary go to stderr (events and summary to --events FILE if given).
//   - The command stays in assay's process group. SIGINT, SIGTERM, SIGHUP,
//     SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH sent to assay are forwarded to
//     it; a signal that assay inherited as ignored is neither caught nor
//     forwarded (so `nohup assay run ...` keeps SIGHUP ignored for the
//     command). A terminal's Ctrl-C reaches the command directly (same
//     process group) and also through forwarding, so it may see SIGINT twice.
//   - The command's direct process gets PR_SET_PDEATHSIG(SIGKILL): if assay
//     dies, so does it. See cgroups.go for what remains after SIGKILL.
//   - When the command exits, the cgroup is removed, which kills whatever
//     is left in it (daemonized descendants), then every program is
//     detached and the summary written.
//
// # Enforcement and fail-closed
//
// Before anything runs, every rule gets a mechanism (see Decide): network
// rules cgroup-bpf; file rules bpf-lsm when a probe program loads and
// attaches, else landlock (enforce mode only), else NOT ENFORCED. The
// report is printed to stderr (and, with --output json, written as a
// {"type":"enforcement"} object first in the event stream). If any rule is
// NOT ENFORCED the command is not started, unless --allow-degraded. Failing
// to attach the network programs is always an error.
//
// # Events
//
//   - Network blocks (or audits) of every process in the cgroup: reported,
//     from the cgroup programs' ring buffer.
//   - File rules enforced with BPF LSM: blocks (or audits) reported.
//   - File rules enforced with Landlock: denials are NOT in the event
//     stream; the command sees EACCES. With --trace the tracepoint path
//     reports every open the command's processes attempt (the path as
//     passed to the syscall, before any decision, so attempts on denied
//     files show up, without a verdict) and every program executed. On
//     Landlock ABI 7 and later the kernel audit log records the denials
//     (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON) when audit is enabled
//     (audit=1, auditd); it is not on the development hosts.
//   - Only the standard streams are passed to the command: other
//     descriptors assay inherited are not.
//
// # Privileges
//
// The command runs with assay's own credentials. When that means root with
// CAP_SYS_ADMIN (see privilegedChild) assay warns at start, in one line: such
// a process can move itself out of its cgroup, detach the programs or
// change the policy. Confine unprivileged tool servers (e.g. `assay run --
// setpriv --reuid=65534 --regid=65534 --clear-groups CMD`).
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
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/monitor"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

// Exit statuses of assay's own failures.
const (
	ExitSetup       = 125
	ExitCannotExec  = 126
	ExitNotFound    = 127
	ShimCommand     = "__exec" // the hidden subcommand of the Landlock shim
	shimRulesetFD   = 3
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

	// Events receives events and the summary; Log the report and messages.
	Events io.Writer
	Log    io.Writer

	// The command and its standard streams.
	Argv           []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// forwarded are the signals passed on to the command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// Probe finds out what the kernel offers for the file rules of p.
func Probe(p *policy.Policy, audit bool) Env {
	env := Env{Audit: audit}
	if !p.HasFileRules() {
		return env
	}
	env.BPFLSM = kernel.ProbeLSM()
	if env.BPFLSM != nil {
		env.LandlockABI, env.Landlock = landlock.ABI()
	}
	return env
}

// Run runs the command and returns assay's exit status. Failures are
// printed to o.Log as one "assay: ..." line.
func Run(o Options) int {
	fail := func(status int, err error) int {
		fmt.Fprintln(o.Log, "assay: "+strings.TrimSpace(err.Error()))
		return status
	}
	if len(o.Argv) == 0 {
		return fail(ExitSetup, errors.New("no command: give it after --, e.g. assay run -- my-mcp-server"))
	}
	path, err := exec.LookPath(o.Argv[0])
	if err != nil {
		status := ExitNotFound
		if errors.Is(err, fs.ErrPermission) {
			status = ExitCannotExec
		}
		return fail(status, err)
	}
	if err := monitor.CheckPrivileges(); err != nil {
		return fail(ExitSetup, err)
	}
	// Resolve every file rule now: a rule is never silently dropped.
	if _, err := monitor.Compile(o.Policy); err != nil {
		return fail(ExitSetup, err)
	}
	audit := policy.EffectiveMode(o.Policy, o.Audit) == policy.ModeAudit
	env := Probe(o.Policy, audit)
	rep := Decide(o.Policy, env)
	if err := rep.Check(o.AllowDegraded); err != nil {
		rep.WriteText(o.Log, "enforcement report for "+o.Policy.File+" ("+o.Policy.Summary()+"):")
		return fail(ExitSetup, err)
	}
	if privilegedChild() {
		fmt.Fprintf(o.Log, "assay: warning: %s will run as root with CAP_SYS_ADMIN, which can move it out of its cgroup and detach or change the enforcement; run it as an unprivileged user (e.g. assay run -- setpriv --reuid=65534 --regid=65534 --clear-groups %s)\n", o.Argv[0], o.Argv[0])
	}

	var rs *landlock.Ruleset
	if rep.Files == MechLandlock {
		var paths []string
		for _, f := range o.Policy.FileDeny {
			paths = append(paths, f.Path)
		}
		rs, err = landlock.Deny(env.LandlockABI, paths)
		if err != nil {
			return fail(ExitSetup, err)
		}
		defer rs.Close()
		rep.Notes = append(rep.Notes, landlockNotes(rs)...)
	}

	// Network rules (and file rules with BPF LSM) go to the kernel session.
	kp := *o.Policy
	if rep.Files != MechBPFLSM {
		kp.FileDeny = nil
	}

	var parent cgroup.Scope
	if o.CgroupParent == "" {
		parent, err = cgroup.Root()
	} else {
		parent, err = cgroup.Resolve(o.CgroupParent)
	}
	if err != nil {
		return fail(ExitSetup, err)
	}
	stale, err := SweepStale(parent)
	if err != nil {
		return fail(ExitSetup, err)
	}
	for _, s := range stale {
		msg := fmt.Sprintf("assay: removed stale cgroup %s (its assay, pid %d, is gone; killed %d leftover process(es))", s.Path, s.Creator, len(s.PIDs))
		if s.Err != nil {
			msg = fmt.Sprintf("assay: stale cgroup %s (its assay, pid %d, is gone) could not be removed: %v", s.Path, s.Creator, s.Err)
		}
		fmt.Fprintln(o.Log, msg)
	}
	self, err := selfIdentity()
	if err != nil {
		return fail(ExitSetup, err)
	}
	leaf, err := cgroup.CreateLeaf(parent.Path, self.prefix())
	if err != nil {
		return fail(ExitSetup, err)
	}
	removeLeaf := func() error { return cgroup.Remove(leaf) }

	// Catch the forwarded signals before anything runs in the cgroup, so
	// none is lost; inherited "ignore" dispositions are kept.
	sigs := make(chan os.Signal, 16)
	for _, s := range forwarded {
		if !signal.Ignored(s) {
			signal.Notify(sigs, s)
		}
	}
	defer signal.Stop(sigs)
	// A closed stderr must not kill assay before it cleans up: with SIGPIPE
	// caught, writes fail with EPIPE instead. (Caught, not ignored: an
	// ignored disposition would be inherited by the command.)
	pipes := make(chan os.Signal, 1)
	if !signal.Ignored(syscall.SIGPIPE) {
		signal.Notify(pipes, syscall.SIGPIPE)
		defer signal.Stop(pipes)
	}

	sess, err := monitor.Start(monitor.Options{
		Policy: &kp, Audit: o.Audit, Scopes: []cgroup.Scope{leaf}, Trace: o.Trace,
		RingBytes: o.RingBytes, Out: o.Events, Format: o.Format,
		// The session is stopped only after the cgroup was removed (or
		// never held a task). Should removal fail, records in flight at
		// detach may be counted but not delivered.
		ScopeEmpty: true,
	})
	if err != nil {
		removeLeaf()
		return fail(ExitSetup, err)
	}
	stop := func() {
		sum, err := sess.Stop()
		if err != nil {
			fmt.Fprintln(o.Log, "assay: stopping: "+err.Error())
		}
		// After a failed write the events go nowhere: the summary goes
		// to the log instead, so that the counts are never lost with them.
		out := o.Events
		if werr := sess.WriteErr(); werr != nil {
			fmt.Fprintln(o.Log, "assay: writing events failed: "+werr.Error()+"; the summary follows")
			out = o.Log
		}
		if o.Format == events.JSON {
			sum.WriteJSON(out)
		} else {
			sum.WriteText(out)
		}
	}

	rep.Cgroup, rep.CgroupID = leaf.Path, leaf.ID
	rep.WriteText(o.Log, fmt.Sprintf("enforcement report for %s (%s) in cgroup %s:", o.Policy.File, o.Policy.Summary(), leaf.Path))
	if o.Format == events.JSON {
		rep.WriteJSON(o.Events)
	}

	cmd := &exec.Cmd{Path: path, Args: o.Argv, Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr}
	if rs != nil {
		// The shim is this very binary: /proc/self/exe cannot be swapped
		// under us by a rename of the file.
		cmd.Path = "/proc/self/exe"
		cmd.Args = append([]string{"assay", ShimCommand, path}, o.Argv...)
		cmd.ExtraFiles = []*os.File{rs.File()}
	}
	cgfd, err := leaf.Open()
	if err != nil {
		removeLeaf()
		stop()
		return fail(ExitSetup, err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()), Pdeathsig: syscall.SIGKILL}
	// PDEATHSIG fires when the thread that forked exits: keep this
	// goroutine on its thread until the command is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	cgfd.Close()
	if err != nil {
		removeLeaf()
		stop()
		status := ExitCannotExec
		if errors.Is(err, fs.ErrNotExist) {
			status = ExitNotFound
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w (starting a process directly in a cgroup needs clone3 with CLONE_INTO_CGROUP, Linux 5.7 or later)", err)
			status = ExitSetup
		}
		return fail(status, fmt.Errorf("cannot start %s: %w", o.Argv[0], err))
	}
	if rs != nil {
		rs.Close() // the shim has its own copy
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	writeWarned := false
	var waitErr error
wait:
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-tick.C:
			if werr := sess.WriteErr(); werr != nil && !writeWarned {
				writeWarned = true
				fmt.Fprintf(o.Log, "assay: writing events failed (%v): later events are lost; %s stays enforced until it exits\n", werr, o.Argv[0])
			}
		case waitErr = <-done:
			break wait
		}
	}
	status := exitStatus(cmd.ProcessState, waitErr)
	if err := removeLeaf(); err != nil {
		fmt.Fprintln(o.Log, "assay: "+err.Error())
	}
	stop()
	return status
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
	notes = append(notes, "landlock: denials are answered with EACCES and are not in assay's event stream (with --trace the open attempts are); the kernel audit log records them when audit is enabled")
	return notes
}

// Shim is `assay __exec PATH ARGV0 ARGS...`: started by Run inside the
// cgroup with a Landlock ruleset on descriptor 3, it restricts itself and
// execs PATH with ARGV0 ARGS... . It only returns on failure.
func Shim(args []string, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "assay: __exec is internal to `assay run`")
		return ExitSetup
	}
	path, argv := args[0], args[1:]
	// Landlock and no_new_privs apply to the calling thread: restrict and
	// exec from the same, locked, thread.
	runtime.LockOSThread()
	abi, err := landlock.ABI()
	if err != nil {
		fmt.Fprintln(stderr, "assay: "+err.Error())
		return ExitSetup
	}
	if err := landlock.RestrictSelf(shimRulesetFD, abi); err != nil {
		fmt.Fprintln(stderr, "assay: landlock: "+err.Error())
		return ExitSetup
	}
	unix.Close(shimRulesetFD)
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(stderr, "assay: cannot execute %s: %v\n", path, err)
	if errors.Is(err, syscall.ENOENT) {
		return ExitNotFound
	}
	return ExitCannotExec
}
