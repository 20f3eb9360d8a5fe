package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/sandbox"
)

const runUsage = `Usage: assay run [flags] -- CMD [ARGS...]

Runs CMD in a fresh cgroup with the policy enforced from its first
instruction. CMD's stdin, stdout and stderr are assay's own; assay never
writes to stdout. The enforcement report, events and the summary go to
stderr (events and summary to --events FILE if given). SIGINT, SIGTERM,
SIGHUP (and SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH) are forwarded to CMD; when
CMD exits, whatever is left in its cgroup is killed.

Network rules are enforced with cgroup BPF programs, file rules with BPF
LSM, or, where BPF LSM is unusable, with Landlock (path based: see the
report). The report names the mechanism of every rule; if a rule cannot be
enforced, CMD is not started unless --allow-degraded is given.

Exit status: CMD's, or 128+N when CMD was killed by signal N; 125 when
assay fails before CMD runs (including a policy rule that nothing on this
kernel can enforce), 126 when CMD cannot be executed, 127 when it is not
found.

Flags:
`

type runFlags struct {
	policy        string
	output        string
	events        string
	audit         bool
	cgroupParent  string
	allowDegraded bool
	trace         bool
	ringSize      int
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	f := &runFlags{}
	fs := flag.NewFlagSet("assay run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.policy, "policy", "", "policy `FILE` (default: the built-in example policy)")
	fs.StringVar(&f.output, "output", "text", "event format: text or json")
	fs.StringVar(&f.events, "events", "", "write events and the summary to `FILE` instead of stderr")
	fs.BoolVar(&f.audit, "audit", false, "report what would be blocked, block nothing")
	fs.StringVar(&f.cgroupParent, "cgroup-parent", "", "create the command's cgroup under the cgroup v2 `PATH` (default: the cgroup2 mount root)")
	fs.BoolVar(&f.allowDegraded, "allow-degraded", false, "start CMD even when some rules cannot be enforced on this kernel")
	fs.BoolVar(&f.trace, "trace", false, "also report (never decide) the files CMD opens and the programs it executes")
	fs.IntVar(&f.ringSize, "ring-size", 0, "ring buffer size in `BYTES` (a power of two; default 16 MiB)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return sandbox.ExitSetup
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fail(stderr, sandbox.ExitSetup, errors.New("no command: usage: assay run [flags] -- CMD [ARGS...]"))
	}
	format, err := events.ParseFormat(f.output)
	if err != nil {
		return fail(stderr, sandbox.ExitSetup, err)
	}
	p, err := loadPolicy(f.policy, stderr)
	if err != nil {
		return fail(stderr, sandbox.ExitSetup, err)
	}
	var evw io.Writer = stderr
	if f.events != "" {
		ef, err := os.OpenFile(f.events, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fail(stderr, sandbox.ExitSetup, fmt.Errorf("--events: %w", err))
		}
		defer ef.Close()
		evw = ef
	}
	return sandbox.Run(sandbox.Options{
		Policy: p, Audit: f.audit, Trace: f.trace, CgroupParent: f.cgroupParent,
		AllowDegraded: f.allowDegraded, Format: format, RingBytes: f.ringSize,
		Events: evw, Log: stderr,
		Argv: argv, Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
	})
}

// shimCmd is the hidden `assay __exec`, see sandbox.Shim.
func shimCmd(args []string, stderr io.Writer) int {
	return sandbox.Shim(args, stderr)
}
