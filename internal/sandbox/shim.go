package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/seccomp"
	"golang.org/x/sys/unix"
)

// # The launch: assay, init, shim, command
//
// assay starts itself (`assay __init`) with clone3 directly into the
// sandbox cgroup and into a new PID namespace (and a mount namespace with
// that namespace's /proc; mounts of the host still propagate into it), with PR_SET_PDEATHSIG
// SIGKILL. That process is the namespace's init (pid 1): it starts the shim
// (`assay __exec`, pid 2), forwards to it the signals assay passes on
// through a pipe, reaps every orphan of the namespace, and exits with the
// command's status when the command exits. When init dies (the command
// exited, or assay died, even by SIGKILL, and took init with it through
// PDEATHSIG), the kernel kills every process left in the namespace: no
// descendant of the command outlives assay.
//
// The shim runs as root in the cgroup, restricts itself on one locked
// thread and execs the command, which inherits all of it:
//
//  1. every descriptor but 0, 1, 2 and the --pass-fd ones is made close-on-exec;
//  2. no_new_privs;
//  3. Landlock: the file ruleset (when Landlock enforces file rules), then a
//     scope-only ruleset (ABI 6 and later) that keeps the command from
//     connecting to abstract Unix sockets and signalling processes created
//     outside it;
//  4. the identity (--user) with its groups, and no capability in any set
//     (bounding, permitted, effective, inheritable, ambient) except --cap;
//  5. the seccomp filter (package seccomp) unless --seccomp=off;
//  6. HOME, USER and LOGNAME of the identity; then execve.

// Internal subcommands.
const (
	InitCommand = "__init"
)

// shimConfig is passed from assay to init to the shim as JSON in argv.
type shimConfig struct {
	Cred      Cred  `json:"cred"`
	Caps      []int `json:"caps,omitempty"`
	Seccomp   bool  `json:"seccomp"`
	PassFDs   []int `json:"pass_fds,omitempty"`
	RulesetFD int   `json:"ruleset_fd"` // -1: none
	ScopeABI  int   `json:"scope_abi"`  // Landlock ABI for scoping, 0: none
	ControlFD int   `json:"control_fd"` // init: signals to forward, one byte each
	Default   []int `json:"default_signals,omitempty"`
	// Policy v2: rules under /proc (path -> access), added by the shim in
	// the sandbox's own /proc ("/proc/self": the command's own /proc/PID).
	ProcRules map[string]int `json:"proc_rules,omitempty"`
	JSON      bool           `json:"json,omitempty"` // messages as JSON lines (--output json)
}

// say writes one "assay: ..." message to stderr, as a JSON message line
// with --output json (every line assay writes is then JSON).
func (c shimConfig) say(stderr io.Writer, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !c.JSON {
		fmt.Fprintln(stderr, "assay: "+msg)
		return
	}
	b, _ := json.Marshal(struct {
		Schema  int    `json:"schema"`
		Type    string `json:"type"`
		Time    string `json:"time"`
		Message string `json:"message"`
	}{events.SchemaVersion, "message", time.Now().UTC().Format(events.JSONTime), msg})
	stderr.Write(append(b, '\n'))
}

func decodeConfig(args []string, stderr io.Writer) (shimConfig, string, []string, bool) {
	var c shimConfig
	if len(args) < 3 {
		fmt.Fprintln(stderr, "assay: __init and __exec are internal to `assay run`")
		return c, "", nil, false
	}
	if err := json.Unmarshal([]byte(args[0]), &c); err != nil {
		fmt.Fprintln(stderr, "assay: internal: bad launch configuration:", err)
		return c, "", nil, false
	}
	return c, args[1], args[2:], true
}

// Init is `assay __init CONFIG PATH ARGV...`, pid 1 of the sandbox's PID
// namespace (see above). It returns the command's exit status, 128+N when
// the command was killed by signal N.
func Init(args []string, stderr io.Writer) int {
	cfg, _, _, ok := decodeConfig(args, stderr)
	if !ok {
		return ExitSetup
	}
	// Signals reach the command only through assay's pipe: a terminal's
	// Ctrl-C reaches it directly (same process group), and init must not
	// pass on a second copy.
	signal.Ignore(forwarded...)
	// A /proc of the namespace, so that /proc/PID means the sandbox's PID
	// (and the host's processes are out of sight), in a mount namespace
	// that receives the host's mounts but sends none back.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		cfg.say(stderr, "init: making mounts private: %v", err)
		return ExitSetup
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		cfg.say(stderr, "init: mounting /proc: %v", err)
		return ExitSetup
	}
	control := os.NewFile(uintptr(cfg.ControlFD), "control")
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	place := func(fd int) {
		for len(files) <= fd {
			files = append(files, nil)
		}
		files[fd] = os.NewFile(uintptr(fd), "")
	}
	for _, fd := range cfg.PassFDs {
		place(fd)
	}
	if cfg.RulesetFD >= 0 {
		place(cfg.RulesetFD)
	}
	// The shim's copy of execw is closed by the command's execve (the shim
	// makes it close-on-exec): until then, a forwarded signal would reach
	// the shim, not the command, and waits in the pipe instead.
	execr, execw, err := os.Pipe()
	if err != nil {
		cfg.say(stderr, "init: %v", err)
		return ExitSetup
	}
	files = append(files, execw)
	argv := append([]string{"assay", ShimCommand}, args...)
	child, err := os.StartProcess("/proc/self/exe", argv, &os.ProcAttr{Files: files})
	execw.Close()
	if err != nil {
		cfg.say(stderr, "starting the command: %v", err)
		return ExitSetup
	}
	if cfg.RulesetFD >= 0 {
		unix.Close(cfg.RulesetFD)
	}
	go func() {
		_, _ = io.Copy(io.Discard, execr)
		execr.Close()
		b := make([]byte, 1)
		for {
			if _, err := control.Read(b); err != nil {
				return
			}
			_ = unix.Kill(child.Pid, syscall.Signal(b[0]))
		}
	}()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			cfg.say(stderr, "init: wait: %v", err)
			return ExitSetup
		}
		if pid != child.Pid {
			continue // an orphan of the namespace
		}
		if ws.Signaled() {
			return signalExitShift + int(ws.Signal())
		}
		if ws.Exited() {
			return ws.ExitStatus()
		}
	}
}

// Shim is `assay __exec CONFIG PATH ARGV...`: it restricts itself (see
// above) and execs PATH with ARGV. It only returns on failure.
func Shim(args []string, stderr io.Writer) int {
	cfg, path, argv, ok := decodeConfig(args, stderr)
	if !ok {
		return ExitSetup
	}
	fail := func(err error) int {
		cfg.say(stderr, "%s", err.Error())
		return ExitSetup
	}
	// Everything below applies to the calling thread: restrict and exec
	// from the same, locked, thread.
	runtime.LockOSThread()
	if err := closeOnExecExcept(cfg.PassFDs); err != nil {
		return fail(err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("no_new_privs: %w", err))
	}
	if cfg.RulesetFD >= 0 {
		abi, err := landlock.ABI()
		if err != nil {
			return fail(err)
		}
		for p, access := range cfg.ProcRules {
			if err := landlock.AddProc(cfg.RulesetFD, p, access, abi); err != nil {
				return fail(err)
			}
		}
		if err := landlock.RestrictSelf(cfg.RulesetFD, abi); err != nil {
			return fail(fmt.Errorf("landlock: %w", err))
		}
		unix.Close(cfg.RulesetFD)
	}
	if cfg.ScopeABI >= 6 {
		if err := landlockScope(cfg.ScopeABI); err != nil {
			return fail(err)
		}
	}
	if err := dropPrivileges(cfg.Cred, cfg.Caps); err != nil {
		return fail(err)
	}
	if cfg.Seccomp {
		if err := seccomp.Install(); err != nil {
			return fail(err)
		}
	}
	env := withIdentity(os.Environ(), cfg.Cred)
	// The signals init ignores get their default action back, unless
	// assay inherited them ignored.
	for _, sig := range cfg.Default {
		if err := defaultSignal(sig); err != nil {
			return fail(err)
		}
	}
	err := syscall.Exec(path, argv, env)
	cfg.say(stderr, "cannot execute %s as %s: %v", path, cfg.Cred, err)
	if errors.Is(err, syscall.ENOENT) {
		return ExitNotFound
	}
	return ExitCannotExec
}

// withIdentity sets HOME, USER and LOGNAME for c in env.
func withIdentity(env []string, c Cred) []string {
	set := map[string]string{"HOME": c.Home}
	if set["HOME"] == "" {
		set["HOME"] = "/"
	}
	if c.Name != "" {
		set["USER"], set["LOGNAME"] = c.Name, c.Name
	}
	out := env[:0:0]
	for _, kv := range env {
		k := kv
		if i := indexByte(kv, '='); i >= 0 {
			k = kv[:i]
		}
		if _, ok := set[k]; ok {
			continue
		}
		if (k == "USER" || k == "LOGNAME") && c.Name == "" {
			continue // not assay's user's name
		}
		out = append(out, kv)
	}
	for _, k := range []string{"HOME", "USER", "LOGNAME"} {
		if v, ok := set[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// closeOnExecExcept marks every descriptor above 2 close-on-exec, except
// keep.
func closeOnExecExcept(keep []int) error {
	keepSet := map[int]bool{}
	for _, k := range keep {
		keepSet[k] = true
	}
	lo := 3
	flush := func(hi uint) error {
		if uint(lo) > hi {
			return nil
		}
		if err := unix.CloseRange(uint(lo), hi, unix.CLOSE_RANGE_CLOEXEC); err != nil {
			return fmt.Errorf("close_range: %w", err)
		}
		return nil
	}
	max := 3
	for k := range keepSet {
		if k+1 > max {
			max = k + 1
		}
	}
	for fd := 3; fd < max; fd++ {
		if keepSet[fd] {
			if err := flush(uint(fd - 1)); err != nil {
				return err
			}
			lo = fd + 1
			// A passed descriptor must survive exec.
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
				return fmt.Errorf("--pass-fd %d: %w", fd, err)
			}
		}
	}
	return flush(^uint(0))
}

// Landlock scopes (ABI 6).
const (
	scopeAbstractUnix = 1 << 0 // LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	scopeSignal       = 1 << 1 // LANDLOCK_SCOPE_SIGNAL
)

// landlockScope adds a Landlock layer that handles no file access but
// scopes abstract Unix sockets and signals to the calling thread's future
// domain: what it execs can reach neither sockets nor processes created
// outside it.
//
// Landlock denies REFER (linking or renaming into another directory) in
// every layer, even one that handles no file access, once any layer of the
// domain handles file access: so this layer handles REFER and grants it on
// /, or it would make every cross-directory rename fail with EXDEV under a
// file ruleset (seen with policy v2's rw trees).
func landlockScope(abi int) error {
	attr := unix.LandlockRulesetAttr{Handled_access_fs: unix.LANDLOCK_ACCESS_FS_REFER, Scoped: scopeAbstractUnix | scopeSignal}
	// The attribute size of ABI 6 (handled_access_fs, _net, scoped).
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), 24, 0)
	if errno != 0 {
		return fmt.Errorf("landlock scope ruleset: %w (%s)", errno, unix.ErrnoName(errno))
	}
	defer unix.Close(int(fd))
	rootFD, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("landlock scope: %w", err)
	}
	defer unix.Close(rootFD)
	pb := unix.LandlockPathBeneathAttr{Allowed_access: unix.LANDLOCK_ACCESS_FS_REFER, Parent_fd: int32(rootFD)}
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&pb)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("landlock scope: granting REFER on /: %w (%s)", errno, unix.ErrnoName(errno))
	}
	if err := landlock.RestrictSelf(int(fd), abi); err != nil {
		return fmt.Errorf("landlock scope: %w", err)
	}
	return nil
}

// defaultSignal sets the disposition of sig to SIG_DFL with a raw
// rt_sigaction (behind the Go runtime's back: execve follows).
func defaultSignal(sig int) error {
	var sa struct {
		handler  uintptr
		flags    uint64
		restorer uintptr
		mask     uint64
	} // SIG_DFL is 0
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0); e != 0 {
		return fmt.Errorf("resetting signal %d: %w", sig, e)
	}
	return nil
}

func jsonConfig(c shimConfig) (string, error) {
	b, err := json.Marshal(c)
	return string(b), err
}
