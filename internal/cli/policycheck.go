package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/sandbox"
	"github.com/assaymcp/assay/internal/session"
)

func newPolicyCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "check a policy file, or print the example policy",
		Long: `Policy tools: 'assay policy check FILE' validates a policy as run and
monitor would; 'assay policy example' prints the built-in example policy;
'assay policy baseline' prints the runtime baseline of version 2 policies.` + exitStatusSection(`
  0  success
  1  the policy is invalid
  2  a wrong command line (also: no subcommand)`),
		Args: unknownSubcommand,
		RunE: helpOrUnknown,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "validate a policy file and list its compiled rules",
		Long: `Validates the policy FILE exactly as run and monitor do when they start,
file paths included (each must exist, be no symlink and have no trailing
slash unless it is a directory; patterns are not supported), and prints
every compiled rule with its id, kind and line.` + exitStatusSection(`
  0  the policy is valid
  1  the policy is invalid (the message names FILE:LINE and the field)
  2  a wrong command line`),
		Args: exactArgs(1, "the policy FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyCheck(args[0], stdout, stderr)
		},
	}, &cobra.Command{
		Use:   "example",
		Short: "print the built-in example policy",
		Long: `Prints the built-in example policy, the one run and monitor use when no
--policy is given. A starting point for your own.` + exitStatusSection(`
  0  printed
  2  a wrong command line`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := stdout.Write(policy.Example()); err != nil {
				return fail(stderr, exitError, err)
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "list what the policy NEW allows that OLD did not",
		Long: `Compares two version 2 policies and lists, one line each, what NEW allows
that OLD did not: file paths (a directory ends in /) with the access letters
added and the rule that grants them, and network destinations (per allow
entry of NEW, per deny entry of OLD, per port) that OLD refused. Nothing
is listed for what NEW takes away. Use it to review what 'assay learn
--policy OLD' added before applying NEW.` + exitStatusSection(`
  0  NEW allows nothing that OLD did not
  1  NEW allows more: the lines say what
  2  a wrong command line, or a policy that is invalid or not version 2`),
		Args: exactArgs(2, "the policies OLD and NEW"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyDiff(args[0], args[1], stdout, stderr)
		},
	}, &cobra.Command{
		Use:   "baseline",
		Short: "print the runtime baseline as it resolves on this machine",
		Long: `Prints the file rules of 'files.baseline: runtime' (version 2 policies) as
they resolve on this machine: symlinks such as /lib on merged-/usr systems
are resolved, and paths that do not exist are left out.` + exitStatusSection(`
  0  printed
  2  a wrong command line`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyBaseline(stdout, stderr)
		},
	})
	return cmd
}

func runPolicyCheck(file string, stdout, stderr io.Writer) error {
	p, err := readPolicy(file)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	// Resolve every file rule exactly as run and monitor do when they
	// start (the same function): a missing path, a symlink, a trailing
	// slash on a file or a pattern fails here with the same message.
	// (Version 1: how version 2 file rules resolve is policy v2's.)
	if p.Version == 1 {
		var err error
		if os.Geteuid() == 0 {
			_, err = session.Compile(p)
		} else {
			// Without privilege the kernel cannot be asked for file
			// identities: the same checks, short of those.
			err = session.CheckPaths(p)
		}
		if err != nil {
			return fail(stderr, exitError, err)
		}
	}
	fmt.Fprintf(stdout, "%s: valid (version %d, mode %s, digest sha256:%s)\n", p.File, p.Version, p.Mode, p.Digest)
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tRULE\tLINE")
	for _, r := range p.Rules() {
		line := "-"
		if r.Line > 0 {
			line = fmt.Sprint(r.Line)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.ID, r.Kind, r.Detail, line)
	}
	if err := tw.Flush(); err != nil {
		return fail(stderr, exitError, errors.New("write: "+err.Error()))
	}
	if p.Version == 2 {
		// policy2: how `assay run` enforces each rule here.
		rep, err := sandbox.CheckV2(p)
		if err != nil {
			return fail(stderr, exitError, err)
		}
		rep.WriteText(stdout, "enforcement by `assay run` on this machine:")
		if n := rep.Unenforced(); n > 0 {
			fmt.Fprintf(stdout, "note: %d rule(s) NOT ENFORCED here: assay run refuses to start unless --allow-degraded\n", n)
		}
		return nil
	}
	if p.HasFileRules() {
		fmt.Fprintln(stdout, "note: file rules were resolved now, as run and monitor resolve them when they start (a path replaced later needs a reload); they are enforced with BPF LSM, or by `assay run` with Landlock where BPF LSM is unusable (see `assay doctor`)")
	}
	return nil
}

// runPolicyBaseline prints the runtime baseline as it resolves here.
func runPolicyBaseline(stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "# files.baseline: runtime, as it resolves on this machine (a policy rule on the same path replaces it)")
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACCESS\tPATH\tFROM")
	for _, e := range policy.RuntimeBaselineEntries() {
		p := e.Rule.Path
		if e.Rule.WantDir && p != "/" {
			p += "/"
		}
		from := "-"
		if e.From != "" {
			from = e.From + " (symlink)"
		}
		if e.Rule.Path == policy.ProcSelf {
			from = "the started process's own /proc/PID"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Rule.ID, e.Rule.Access, p, from)
	}
	if err := tw.Flush(); err != nil {
		return fail(stderr, exitError, errors.New("write: "+err.Error()))
	}
	return nil
}

func runPolicyDiff(oldFile, newFile string, stdout, stderr io.Writer) error {
	oldp, err := readPolicy(oldFile)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	newp, err := readPolicy(newFile)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	ws, err := policy.Diff(oldp, newp)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	for _, w := range ws {
		if _, err := fmt.Fprintln(stdout, w.String()); err != nil {
			return fail(stderr, exitUsage, err)
		}
	}
	if len(ws) > 0 {
		return exitWith(exitError)
	}
	return nil
}
