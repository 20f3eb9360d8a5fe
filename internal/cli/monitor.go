package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/container"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/inotify"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
)

type pidList []int

func (p *pidList) String() string {
	if len(*p) == 0 {
		return ""
	}
	return fmt.Sprint([]int(*p))
}
func (p *pidList) Type() string { return "PID" }
func (p *pidList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a process id", f)
		}
		*p = append(*p, n)
	}
	return nil
}

type monitorFlags struct {
	policy   string
	cgroups  []string
	pids     pidList
	all      bool
	object   string
	duration durationFlag
	output   outputFlag
	audit    bool
	trace    bool
	ringSize sizeFlag
	rate     int
	pin      string
	attach   string
	metrics  string
	// containers (fsrules, #10)
	container string
	paths     string
}

func newMonitorCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &monitorFlags{output: "text"}
	cmd := &cobra.Command{
		Use:   "monitor (--cgroup PATH | --pid PID | --all) [flags]\n  assay monitor --attach NAME [--output json] [--duration D]",
		Short: "judge processes already running: a cgroup, a process's cgroup, or the whole host",
		Long: `Loads the BPF object embedded in the binary (or --ebpf OBJ), fills its maps
from the policy, attaches to the scope, streams events to stdout until
SIGINT, SIGTERM or --duration, then detaches everything and prints the
summary (to stderr in text mode, as the last JSON line on stdout with
--output json).

The scope is one or more cgroup v2 directories (--cgroup, absolute or
relative to the cgroup2 mount), the cgroups of processes (--pid), both
repeatable (up to 8 scopes), or the whole host (--all, only when asked for).
SIGHUP re-reads the --policy file and swaps it in atomically; a refused
policy leaves the old one in force.

--pin NAME keeps the instance enforcing after this process exits, until
'assay detach NAME'; --attach NAME streams the events of a pinned instance
(it takes no policy or scope).` + exitStatusSection(`
  0  a normal stop (SIGINT, SIGTERM, --duration, or a detached --attach)
  1  an error: bad policy, missing kernel feature, failed write of events
  2  a wrong command line
  3  a monitored cgroup was removed while monitored`),
		Example: `  assay monitor --policy policy.yaml --cgroup /sys/fs/cgroup/mcp.slice
  assay monitor --policy policy.yaml --pid 4242 --output json
  assay monitor --policy policy.yaml --cgroup mcp.slice --pin mcp
  assay monitor --attach mcp`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMonitor(f, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "", "policy `FILE` (default: the built-in example policy)")
	fl.StringArrayVar(&f.cgroups, "cgroup", nil, "judge the cgroup v2 `PATH` and its descendants (absolute, or relative to the cgroup2 mount); repeatable")
	fl.Var(&f.pids, "pid", "judge the cgroup v2 of process `PID` and its descendants; repeatable")
	fl.BoolVar(&f.all, "all", false, "judge every process on the host (must be asked for explicitly)")
	fl.StringVar(&f.object, "ebpf", "", "use the BPF object `OBJ` instead of the built-in one")
	fl.Var(&f.duration, "duration", "stop after this long: 30s, 2m, 1h (a bare number is seconds); default: until SIGINT or SIGTERM")
	fl.Var(&f.output, "output", "event format: text or json")
	fl.BoolVar(&f.audit, "audit", false, "report what would be blocked, block nothing")
	fl.BoolVar(&f.trace, "trace", false, "also report (never decide) the files in-scope processes open and the programs they execute")
	fl.Var(&f.ringSize, "ring-size", "ring buffer size: bytes, or with a binary unit (256K, 16M, 64MiB); a power of two; default 16MiB")
	fl.IntVar(&f.rate, "rate-limit", kernel.DefaultRateLimit, "most events one cgroup may emit per second (`N`; the rest are counted as suppressed; 0: unlimited)")
	fl.StringVar(&f.pin, "pin", "", "pin the instance as `NAME` under "+kernel.PinRoot+": enforcement continues after assay exits, until 'assay detach NAME'")
	fl.StringVar(&f.attach, "attach", "", "stream the events of the pinned instance `NAME` (no policy or scope needed)")
	registerMetrics(fl, &f.metrics)
	// containers (fsrules, #10)
	fl.StringVar(&f.container, "container", "", "judge the Docker or Podman container `NAME|ID` (its cgroup, found through the engine's CLI); policy paths are resolved inside it")
	fl.StringVar(&f.paths, "paths", "container", "with --container: resolve policy paths inside the `container` (default) or on the host")
	return cmd
}

func runMonitor(f *monitorFlags, stdout, stderr io.Writer) error {
	format, err := events.ParseFormat(string(f.output))
	if err != nil {
		return usagef("%v", err)
	}
	if f.attach != "" {
		if f.policy != "" || len(f.cgroups)+len(f.pids) > 0 || f.all || f.pin != "" {
			return usagef("--attach streams a pinned instance: it takes no --policy, scope or --pin")
		}
		return attachCmd(f, format, stdout, stderr)
	}
	if f.rate < 0 {
		return usagef("--rate-limit must be 0 (unlimited) or more")
	}
	rate := f.rate
	if rate == 0 {
		rate = -1
	}
	nScopes := len(f.cgroups) + len(f.pids)
	if f.container != "" {
		nScopes++
	}
	if f.paths != "container" && f.paths != "host" {
		return usagef("--paths must be container or host")
	}
	if f.paths != "container" && f.container == "" {
		return usagef("--paths applies to --container")
	}
	if f.all && nScopes > 0 {
		return usagef("--all judges the whole host; it cannot be combined with --cgroup or --pid")
	}
	if !f.all && nScopes == 0 {
		return usagef("no scope: give --cgroup PATH, --pid PID or --container NAME (the processes to judge), or --all for the whole host")
	}

	p, err := loadPolicy(f.policy, f.audit, stderr)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	scopes, err := resolveScopes(f.cgroups, f.pids)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	pathRoot, cscope, err := containerScope(f.container, f.paths, stderr)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	if cscope != nil {
		scopes = appendScope(scopes, *cscope)
	}

	signal.Ignore(syscall.SIGPIPE) // a closed output pipe is an error we report, not a silent death
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// The removal of a scope (and of the pins) is told by the kernel's
	// inotify events: the watches are in place before anything is
	// attached, and the first look follows them.
	watch, err := inotify.New()
	if err != nil {
		return fail(stderr, exitError, err)
	}
	defer watch.Close()
	for _, s := range scopes {
		if err := s.WatchGone(watch); err != nil {
			return fail(stderr, exitError, err)
		}
	}

	session.Version = Version()
	met, msrv, err := startMetrics(f.metrics, stderr)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	defer msrv.Close()
	sess, err := session.Start(session.Options{
		Policy: p, Audit: f.audit, Scopes: scopes, All: f.all, Trace: f.trace,
		Object: f.object, RingBytes: int(f.ringSize), RateLimit: rate, Pin: f.pin, Out: stdout, Format: format,
		Metrics:  met,
		PathRoot: pathRoot,
	})
	if err != nil {
		return fail(stderr, exitError, err)
	}
	mode := "enforcing"
	if policy.EffectiveMode(p, f.audit) == policy.ModeAudit {
		mode = "auditing"
	}
	where := "the whole host"
	if !f.all {
		names := make([]string, len(scopes))
		for i, s := range scopes {
			names[i] = s.String()
		}
		where = strings.Join(names, ", ")
	}
	fmt.Fprintf(stderr, "assay: %s %s (%s) on %s; stop with Ctrl-C\n", mode, p.File, p.Summary(), where)
	if f.pin != "" {
		fmt.Fprintf(stderr, "assay: pinned as %q: enforcement continues after this process exits; `assay detach %s` removes it\n", f.pin, f.pin)
		if err := kernel.WatchPin(watch, f.pin); err != nil {
			fmt.Fprintf(stderr, "assay: %v: a removal of the pins of %q will not be reported\n", err, f.pin)
		}
	}

	var timeout <-chan time.Time
	if f.duration > 0 {
		timeout = time.After(time.Duration(f.duration))
	}
	status := exitOK
	pinWarned := false
wait:
	for {
		select {
		case <-sigs:
			break wait
		case <-timeout:
			break wait
		case <-hup:
			reload(sess, f.policy, f.audit, stderr)
		case <-sess.WriteFailed():
			status = exitError
			break wait
		case <-watch.C():
			// A scope or the pins may be gone (or this is the first
			// look): look.
			if gone := goneScope(scopes); gone != "" {
				fmt.Fprintf(stderr, "assay: %s was removed while monitored: nothing is left to judge there; stopping\n", gone)
				status = exitScopeGone
				break wait
			}
			if f.pin != "" && !pinWarned && !kernel.PinPresent(f.pin) {
				pinWarned = true
				fmt.Fprintf(stderr, "assay: the pins of %q are gone (bpffs unmounted or removed): enforcement now lasts only while this monitor runs\n", f.pin)
			}
		}
	}
	sum, err := sess.Stop()
	if err != nil {
		fmt.Fprintln(stderr, "assay: stopping: "+err.Error())
		status = exitError
	}
	if werr := sess.WriteErr(); werr != nil {
		what := "stopped and detached"
		if sess.Pinned() {
			what = "stopped; the pinned instance stays in force"
		}
		fmt.Fprintf(stderr, "assay: writing events failed (%v): %s\n", werr, what)
		status = exitError
	}
	if sess.Pinned() && !pinWarned {
		if status == exitScopeGone {
			fmt.Fprintf(stderr, "assay: instance %q stays pinned (enforcing on the scopes still there, if any); `assay detach %s` removes it\n", f.pin, f.pin)
		} else {
			fmt.Fprintf(stderr, "assay: instance %q stays pinned and enforcing; `assay detach %s` removes it\n", f.pin, f.pin)
		}
	}
	if format == events.JSON {
		if err := sum.WriteJSON(stdout); err != nil {
			status = exitError
		}
	} else {
		sum.WriteText(stderr)
	}
	return exitWith(status)
}

// loadPolicy reads the policy file, or the built-in example when none.
// With audit (--audit) the policy's mode is audit, so that every header
// line says so.
func loadPolicy(path string, audit bool, stderr io.Writer) (*policy.Policy, error) {
	var p *policy.Policy
	var err error
	if path == "" {
		fmt.Fprintln(stderr, "assay: no --policy given: using the built-in example policy (see `assay policy example`)")
		p, err = policy.Parse("built-in example policy", policy.Example())
	} else {
		p, err = readPolicy(path)
	}
	if err != nil {
		return nil, err
	}
	if audit {
		p.Mode = policy.ModeAudit
	}
	return p, nil
}

// readPolicy loads a policy file by its absolute path, so that every
// message, header and pinned description names it the same way.
func readPolicy(path string) (*policy.Policy, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return policy.Load(abs)
}

func resolveScopes(cgroups []string, pids []int) ([]cgroup.Scope, error) {
	var out []cgroup.Scope
	seen := map[uint64]bool{}
	add := func(s cgroup.Scope) {
		if !seen[s.ID] {
			seen[s.ID] = true
			out = append(out, s)
		}
	}
	for _, c := range cgroups {
		s, err := cgroup.Resolve(c)
		if err != nil {
			return nil, err
		}
		add(s)
	}
	for _, pid := range pids {
		s, err := cgroup.ForPID(pid)
		if err != nil {
			return nil, err
		}
		if s.Level == 0 {
			return nil, fmt.Errorf("process %d is in the root cgroup; scoping to it would judge the whole host: use --all if that is what you want", pid)
		}
		add(s)
	}
	return out, nil
}

// containerScope finds the container named by --container: its cgroup as a
// scope and, unless --paths host, its root for policy paths.
func containerScope(ref, paths string, stderr io.Writer) (string, *cgroup.Scope, error) {
	if ref == "" {
		return "", nil, nil
	}
	c, err := container.Find(ref)
	if err != nil {
		return "", nil, err
	}
	s, err := cgroup.ForPID(c.PID)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", c, err)
	}
	if s.Level == 0 {
		return "", nil, fmt.Errorf("%s is in the root cgroup; scoping to it would judge the whole host", c)
	}
	root := c.Root()
	where := "inside it (" + root + ")"
	if paths == "host" {
		root, where = "", "on the host (--paths host)"
	}
	fmt.Fprintf(stderr, "assay: %s: cgroup %s; policy paths resolved %s\n", c, s.Path, where)
	return root, &s, nil
}

func appendScope(scopes []cgroup.Scope, s cgroup.Scope) []cgroup.Scope {
	for _, o := range scopes {
		if o.ID == s.ID {
			return scopes
		}
	}
	return append(scopes, s)
}
