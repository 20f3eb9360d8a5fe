package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/assaymcp/assay/internal/policy"
)

func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "example" {
		stdout.Write(policy.Example())
		return exitOK
	}
	if len(args) < 1 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: assay policy check FILE | assay policy example")
		return exitUsage
	}
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: assay policy check FILE")
		return exitUsage
	}
	p, err := policy.Load(args[1])
	if err != nil {
		return fail(stderr, exitError, err)
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
	if p.HasFileRules() {
		fmt.Fprintln(stdout, "note: file rules need BPF LSM at run time (see `assay monitor`); paths are resolved when the monitor starts")
	}
	return exitOK
}
