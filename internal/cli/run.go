package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/sandbox"
)

type runFlags struct {
	policy        string
	output        outputFlag
	events        string
	audit         bool
	cgroupParent  string
	allowDegraded bool
	trace         bool
	ringSize      sizeFlag
	contain       containFlags
	mcp           bool
	metrics       string
}

// ---- containment flags (issue #9): --user, --cap, --pass-fd, --seccomp,
// --memory, --pids, --cpu ----

type containFlags struct {
	user    string
	caps    []string
	passFDs []int
	seccomp string
	memory  string
	pids    int64
	cpu     float64
}

func (c *containFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&c.user, "user", "", "run CMD as `USER[:GROUP]` (names or numbers; default: the sudo/pkexec caller, else nobody:nogroup)")
	fl.StringArrayVar(&c.caps, "cap", nil, "keep capability `NAME` for CMD (repeatable, e.g. net_bind_service); all others are dropped")
	fl.IntSliceVar(&c.passFDs, "pass-fd", nil, "pass descriptor `N` to CMD (repeatable); only 0, 1 and 2 are passed otherwise")
	fl.StringVar(&c.seccomp, "seccomp", "on", "the default seccomp filter: on, or off (the report then says NOT CONTAINED)")
	fl.StringVar(&c.memory, "memory", "", "limit CMD's cgroup to `BYTES` of memory (suffixes K, M, G; no swap)")
	fl.Int64Var(&c.pids, "pids", 0, "limit CMD's cgroup to `N` processes and threads")
	fl.Float64Var(&c.cpu, "cpu", 0, "limit CMD's cgroup to `CORES` CPUs (e.g. 0.5)")
}

func (c *containFlags) apply(o *sandbox.Options) error {
	o.User = c.user
	o.Caps = c.caps
	o.PassFDs = c.passFDs
	switch c.seccomp {
	case "on":
	case "off":
		o.NoSeccomp = true
	default:
		return fmt.Errorf("--seccomp %q: on or off", c.seccomp)
	}
	if c.memory != "" {
		n, ok := policy.ParseBytes(c.memory)
		if !ok {
			return fmt.Errorf("--memory %q: give a positive number of bytes, optionally with K, M or G", c.memory)
		}
		o.Limits.Memory = n
	}
	o.Limits.Pids = c.pids
	o.Limits.CPU = c.cpu
	return o.Limits.Check()
}

// ---- end of containment flags ----

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &runFlags{output: "text"}
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "run a command under policy, enforced from its first instruction",
		Long: `Runs CMD in a fresh cgroup with the policy enforced from its first
instruction. CMD's stdin, stdout and stderr are assay's own; assay never
writes to stdout. The enforcement report, events and the summary go to
stderr (events and summary to --events FILE if given). SIGINT, SIGTERM,
SIGHUP (and SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH) are forwarded to CMD; when
CMD exits, whatever is left in its cgroup is killed.

CMD is contained: it runs as --user (default: the sudo or pkexec caller,
else nobody:nogroup), without capabilities (but --cap), under no_new_privs
and a seccomp filter (--seccomp), with descriptors 0, 1, 2 only (but
--pass-fd), in a PID namespace that dies with assay, within --memory,
--pids and --cpu. The report says NOT CONTAINED for what is turned off.

Network rules are enforced with cgroup BPF programs, file rules with BPF
LSM, or, where BPF LSM is unusable, with Landlock (path based: see the
report). The report names the mechanism of every rule; if a rule cannot be
enforced, CMD is not started unless --allow-degraded is given.

Assay's flags come before CMD: everything from CMD on (or after --) is
CMD's own command line.` + exitStatusSection(`
  CMD's status, or 128+N when CMD was killed by signal N
  125  assay failed before CMD ran: a wrong command line, a bad policy,
       a rule that nothing on this kernel can enforce
  126  CMD cannot be executed
  127  CMD was not found`),
		Example: `  assay run -- bash -c 'echo > /dev/tcp/127.0.0.1/22'
  assay run --policy /etc/assay/filesystem.yaml --events /var/log/assay.log -- npx @modelcontextprotocol/server-filesystem /srv`,
		Annotations: map[string]string{usageStatusKey: strconv.Itoa(sandbox.ExitSetup)},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("no command: give it after --, e.g. assay run -- my-mcp-server")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			return runRun(f, argv, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false) // CMD's flags are CMD's
	fl.StringVar(&f.policy, "policy", "", "policy `FILE` (default: the built-in example policy)")
	fl.Var(&f.output, "output", "event format: text or json")
	fl.StringVar(&f.events, "events", "", "write events and the summary to `FILE` instead of stderr")
	fl.BoolVar(&f.audit, "audit", false, "report what would be blocked, block nothing")
	fl.StringVar(&f.cgroupParent, "cgroup-parent", "", "create the command's cgroup under the cgroup v2 `PATH` (default: the cgroup2 mount root)")
	fl.BoolVar(&f.allowDegraded, "allow-degraded", false, "start CMD even when some rules cannot be enforced on this kernel")
	fl.BoolVar(&f.trace, "trace", false, "also report (never decide) the files CMD opens and the programs it executes")
	fl.Var(&f.ringSize, "ring-size", "ring buffer size: bytes, or with a binary unit (256K, 16M, 64MiB); a power of two; default 16MiB")
	f.contain.register(fl)
	registerMetrics(fl, &f.metrics)
	fl.BoolVar(&f.mcp, "mcp", false, "CMD is an MCP stdio server: relay its stdin/stdout, name the tool call in flight on every event, apply the policy's mcp.tools rules")
	return cmd
}

func runRun(f *runFlags, argv []string, stdout, stderr io.Writer) error {
	format, err := events.ParseFormat(string(f.output))
	if err != nil {
		return usagef("%v", err)
	}
	// CMD gets the real stderr; every line assay writes from here on
	// starts with this run's token (see events.Marker).
	cmdStderr := stderr
	_, mark := markOutputs(format, nil, stderr)
	stderr = mark
	// With --output json every line assay writes is JSON: its messages
	// too. With --events FILE, the file gets them as well (and the text
	// report), after a start line: it is appended to, run after run.
	var log io.Writer = stderr
	var evw io.Writer = stderr
	var ef *os.File
	if f.events != "" {
		ef, err = os.OpenFile(f.events, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return failJSON(stderr, format, sandbox.ExitSetup, fmt.Errorf("--events: %w", err))
		}
		defer ef.Close()
		evw = events.NewMarker(ef, mark.Token())
		log = copyTo{stderr, evw}
	}
	if format == events.JSON {
		jl := newJSONLines(log)
		defer jl.Flush()
		log = jl
	}
	if ef != nil {
		name := "built-in example policy"
		if f.policy != "" {
			name, _ = filepath.Abs(f.policy)
		}
		if err := writeStart(evw, format == events.JSON, name, argv, time.Now()); err != nil {
			return fail(log, sandbox.ExitSetup, fmt.Errorf("--events: %w", err))
		}
	}
	p, err := loadPolicy(f.policy, f.audit, log)
	if err != nil {
		return fail(log, sandbox.ExitSetup, err)
	}
	o := sandbox.Options{
		Policy: p, Audit: f.audit, Trace: f.trace, CgroupParent: f.cgroupParent,
		AllowDegraded: f.allowDegraded, Format: format, RingBytes: int(f.ringSize),
		Events: evw, Log: log,
		Argv: argv, Stdin: os.Stdin, Stdout: stdout, Stderr: cmdStderr,
		MCP: f.mcp,
	}
	if err := f.contain.apply(&o); err != nil {
		return fail(log, sandbox.ExitSetup, err)
	}
	met, msrv, err := startMetrics(f.metrics, stderr)
	if err != nil {
		return fail(stderr, sandbox.ExitSetup, err)
	}
	defer msrv.Close()
	o.Metrics = met
	return exitWith(sandbox.Run(o))
}

// failJSON is fail, with the line as JSON under --output json.
func failJSON(stderr io.Writer, format events.Format, status int, err error) error {
	if format == events.JSON {
		jl := newJSONLines(stderr)
		defer jl.Flush()
		return fail(jl, status, err)
	}
	return fail(stderr, status, err)
}
