package cli

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/learn"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/sandbox"
)

type learnFlags struct {
	policy       string
	out          string
	events       string
	cgroupParent string
	ringSize     sizeFlag
	dnsUpstream  []string
	contain      containFlags
}

func newLearnCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &learnFlags{}
	cmd := &cobra.Command{
		Use:   "learn [flags] -- CMD [ARGS...]",
		Short: "run a command observed and write the least-privilege policy it needs",
		Long: `Runs CMD as 'assay run' does (same containment: --user, no capabilities,
seccomp, PID namespace), but in an observe mode where nothing is blocked,
and writes a version 2 policy that allows what the run did and nothing
else: files default deny with the runtime baseline, the files it opened
(read, write, create) and executed, directories it used in several places
as subtree rules, and network default deny with the addresses (by host name
where a lookup through assay's resolver answered them), ports and protocols
it connected or sent to.

Sensitive paths and addresses the run touched (~/.ssh, ~/.aws,
~/.config/gcloud, .env files, /etc/shadow, container engine sockets, cloud
metadata addresses) are written as commented-out rules with a warning and
listed on stderr. Every rule has a comment saying what was seen.

With --policy BASE, the result is BASE (a version 2 policy) with only what
it did not allow added, each addition marked "learned:".

The policy goes to --out FILE, else to stdout after CMD's own output
(CMD's stdout is assay's). Review it before use: see 'assay policy diff'.` + exitStatusSection(`
  CMD's status (the policy is written whatever it is), or 128+N when CMD
  was killed by signal N
  125  assay failed before CMD ran, or could not write the policy
  126  CMD cannot be executed
  127  CMD was not found`),
		Example: `  assay learn --out fs.yaml -- npx -y @modelcontextprotocol/server-filesystem ~/projects
  assay learn --policy fs.yaml --out fs2.yaml -- python3 tool.py && assay policy diff fs.yaml fs2.yaml`,
		Annotations: map[string]string{usageStatusKey: strconv.Itoa(sandbox.ExitSetup)},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("no command: give it after --, e.g. assay learn --out p.yaml -- my-mcp-server")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			return runLearn(f, argv, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVar(&f.policy, "policy", "", "start from the version 2 policy `BASE` and add only what it does not allow")
	fl.StringVar(&f.out, "out", "", "write the policy to `FILE` (default: stdout)")
	fl.StringVar(&f.events, "events", "", "also write the observed events and the summary to `FILE`")
	fl.StringVar(&f.cgroupParent, "cgroup-parent", "", "create the command's cgroup under the cgroup v2 `PATH` (default: the cgroup2 mount root)")
	fl.StringArrayVar(&f.dnsUpstream, "dns-upstream", nil, "forward the command's DNS queries to `ADDR[:PORT]` (repeatable; default: BASE's dns.upstream, else the nameservers of /etc/resolv.conf); written as the policy's dns.upstream")
	fl.Var(&f.ringSize, "ring-size", "ring buffer size: bytes, or with a binary unit (256K, 16M, 64MiB); a power of two; default 16MiB")
	f.contain.register(fl)
	return cmd
}

func runLearn(f *learnFlags, argv []string, stdout, stderr io.Writer) error {
	lo := learn.Options{Argv: argv, Subdirs: subdirs, Hosts: true}
	for _, s := range f.dnsUpstream {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fail(stderr, sandbox.ExitSetup, fmt.Errorf("--dns-upstream %q: give ADDR or ADDR:PORT ([V6]:PORT)", s))
			}
			ap = netip.AddrPortFrom(a, 53)
		}
		lo.Upstream = append(lo.Upstream, ap)
	}
	if f.policy != "" {
		abs, err := filepath.Abs(f.policy)
		if err != nil {
			return fail(stderr, sandbox.ExitSetup, err)
		}
		text, err := os.ReadFile(abs)
		if err != nil {
			return fail(stderr, sandbox.ExitSetup, fmt.Errorf("--policy: %w", err))
		}
		if lo.Base, err = policy.Parse(abs, text); err != nil {
			return fail(stderr, sandbox.ExitSetup, err)
		}
		if lo.Base.Version != 2 {
			return fail(stderr, sandbox.ExitSetup, fmt.Errorf("%s: version %d: assay learn extends version 2 policies only", abs, lo.Base.Version))
		}
		lo.BaseText = text
		if len(lo.Upstream) == 0 {
			lo.Upstream = lo.Base.DNS.Upstream
		}
	}
	o := sandbox.Options{
		CgroupParent: f.cgroupParent, Format: events.Text, RingBytes: int(f.ringSize),
		Log: stderr, Argv: argv, Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
	}
	if f.events != "" {
		ef, err := os.OpenFile(f.events, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fail(stderr, sandbox.ExitSetup, fmt.Errorf("--events: %w", err))
		}
		defer ef.Close()
		o.Events = ef
	}
	if err := f.contain.apply(&o); err != nil {
		return fail(stderr, sandbox.ExitSetup, err)
	}
	fmt.Fprintf(stderr, "assay learn: observing %s (nothing is blocked)\n", argv[0])
	status, ran, rec, sum := learn.Run(o, lo.Upstream)
	if !ran {
		return exitWith(status)
	}
	res, err := learn.Generate(rec, lo)
	if err != nil {
		return fail(stderr, sandbox.ExitSetup, err)
	}
	if f.out != "" {
		if err := os.WriteFile(f.out, res.Policy, 0o644); err != nil {
			return fail(stderr, sandbox.ExitSetup, fmt.Errorf("--out: %w", err))
		}
	} else if _, err := stdout.Write(res.Policy); err != nil {
		return fail(stderr, sandbox.ExitSetup, err)
	}
	writeLearnSummary(stderr, f.out, status, res, rec, sum)
	return exitWith(status)
}

func writeLearnSummary(w io.Writer, out string, status int, res learn.Result, rec *learn.Recorder, sum events.Summary) {
	where := "stdout"
	if out != "" {
		where = out
	}
	fmt.Fprintf(w, "assay learn: wrote %s: %d file rules, %d network rules (%d observations the baseline or BASE already allowed)\n",
		where, res.Files, res.Network, res.Covered)
	if status != 0 {
		fmt.Fprintf(w, "assay learn: warning: the command exited with status %d: the policy holds only what this run did before it ended\n", status)
	}
	if n := sum.Tracepoint.Dropped + sum.Socket.Dropped + sum.LSM.Dropped + sum.Tracepoint.Suppressed + sum.Socket.Suppressed; n > 0 {
		fmt.Fprintf(w, "assay learn: warning: %d events were lost (ring buffer full): the policy may be missing rules; run again with a larger --ring-size or a shorter run\n", n)
	}
	if len(res.Sensitive) > 0 {
		fmt.Fprintf(w, "assay learn: warning: %d sensitive paths or addresses were touched; they are commented out in the policy (uncomment only on purpose):\n", len(res.Sensitive))
		for _, s := range res.Sensitive {
			fmt.Fprintln(w, "  "+s)
		}
	}
	for _, s := range res.Widened {
		fmt.Fprintln(w, "assay learn: note: wider than the run: "+s)
	}
	var notes []string
	if rec.FailedOpens > 0 {
		notes = append(notes, fmt.Sprintf("%d failed opens not learned", rec.FailedOpens))
	}
	if rec.Unresolved > 0 {
		notes = append(notes, fmt.Sprintf("%d opens of files the kernel could not name in full (deleted, or a path longer than 255 bytes) not learned", rec.Unresolved))
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "assay learn: note: "+strings.Join(notes, "; "))
	}
	fmt.Fprintln(w, "assay learn: review the policy, then: assay policy check FILE; assay run --policy FILE -- CMD")
}

// subdirs lists a directory's subdirectories (the collapse rule of learn).
func subdirs(dir string) ([]string, bool) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, false
	}
	var out []string
	for _, e := range es {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, true
}
