// Package cli implements the assay command line on cobra: one definition of
// every command and flag serves parsing, --help, shell completion and the
// man pages (see [Command]).
package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/assaymcp/assay/internal/sandbox"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // a failure: bad input, a missing feature, a runtime error
	exitUsage = 2 // the command line itself is wrong
	// exitScopeGone: the monitored cgroup was removed while monitored.
	exitScopeGone = 3
)

// usageStatusKey annotates a command whose wrong command lines exit with
// another status than 2 (`run`: 125, since 2 may be CMD's own status).
const usageStatusKey = "assay/usage-status"

// exitError carries a command's exit status to [Main]. With a nil err the
// command has already said what it had to say.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.status)
	}
	return e.err.Error()
}

// usageError is a wrong command line: reported in one line with a pointer
// to --help, exit status 2 (or the command's usage status).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// fail prints one line, prefixed with the program name, and returns an
// error that makes [Main] exit with status.
func fail(stderr io.Writer, status int, err error) error {
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintln(stderr, "assay: "+msg)
	return exitWith(status)
}

// exitWith ends the command with status, printing nothing more.
func exitWith(status int) error {
	if status == exitOK {
		return nil
	}
	return &statusError{status: status}
}

// Main runs the command line and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	root := Command(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var se *statusError
	if errors.As(err, &se) {
		if se.err != nil {
			fmt.Fprintln(stderr, "assay: "+strings.TrimSpace(se.err.Error()))
		}
		return se.status
	}
	// Everything else is a wrong command line: cobra's own errors (unknown
	// flag, missing flag value, bad value) and ours.
	if cmd == nil {
		cmd = root
	}
	status := exitUsage
	if s, ok := cmd.Annotations[usageStatusKey]; ok {
		fmt.Sscan(s, &status)
	}
	msg := strings.TrimSpace(strings.SplitN(err.Error(), "\n", 2)[0])
	fmt.Fprintf(stderr, "%s: %s (see '%s --help')\n", cmd.CommandPath(), msg, cmd.CommandPath())
	return status
}

// Command returns the assay command tree writing to stdout and stderr.
// `make man` and the tests render it; [Main] runs it.
func Command(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "assay",
		Short: "kernel-enforced policy for MCP tool servers",
		Long: `Assay enforces a security policy on MCP tool servers (and any other
process) inside the Linux kernel: network rules with cgroup BPF programs,
file rules with BPF LSM (or Landlock, for assay run, where BPF LSM is
unusable). Every blocked or audited action is reported as an event.

Start with 'assay doctor' (what this machine can enforce), then
'assay run -- CMD' (run a server under policy) or 'assay monitor'
(judge processes already running).` + exitStatusSection(`
  0  success
  1  an error (bad input, a missing kernel feature, a runtime failure)
  2  a wrong command line
  Each command's --help lists its own statuses.`),
		Version:               Version(),
		SilenceErrors:         true,
		SilenceUsage:          true,
		DisableFlagsInUseLine: true,
		Args:                  unknownSubcommand,
		RunE:                  helpOrUnknown,
		CompletionOptions:     cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("assay {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newRunCmd(stdout, stderr),
		newLearnCmd(stdout, stderr),
		newMonitorCmd(stdout, stderr),
		newStatusCmd(stdout, stderr),
		newReloadCmd(stdout, stderr),
		newDetachCmd(stdout, stderr),
		newPolicyCmd(stdout, stderr),
		newDoctorCmd(stdout, stderr),
		newVersionCmd(stdout),
		newShimCmd(stderr),
		newInitCmd(stderr),
		newWatchCmd(stderr),
	)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	// cobra's own commands: document their exit statuses too.
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Long += exitStatusSection(`
  0  the help was printed
  2  a wrong command line`)
		case "completion":
			c.Long += exitStatusSection(`
  0  the script was written
  2  a wrong command line`)
			for _, sh := range c.Commands() {
				sh.Long += exitStatusSection(`
  0  the script was written
  2  a wrong command line`)
			}
		}
	}
	return root
}

// exitStatusSection formats the "Exit status:" part of a command's help.
func exitStatusSection(lines string) string {
	return "\n\nExit status:" + lines
}

// unknownSubcommand rejects `assay NAME` (or `assay policy NAME`) for a
// NAME that is no subcommand, with suggestions, in one line.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + quoteList(s) + "?"
	}
	return &usageError{msg: msg}
}

// helpOrUnknown is the action of a command that only groups others: the
// help on stderr and exit 2 when called alone.
func helpOrUnknown(cmd *cobra.Command, args []string) error {
	if err := unknownSubcommand(cmd, args); err != nil {
		return err
	}
	cmd.SetOut(cmd.ErrOrStderr())
	cmd.Help()
	return exitWith(exitUsage)
}

// flagError turns pflag's parse errors into one line with a suggestion for
// a mistyped flag name.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var name string
	switch {
	case strings.HasPrefix(msg, "unknown flag: --"):
		name = strings.TrimPrefix(msg, "unknown flag: --")
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// "unknown shorthand flag: 'x' in -xyz"
		if i := strings.Index(msg, " in -"); i >= 0 {
			name = msg[i+len(" in -"):]
		}
	}
	if name != "" {
		name, _, _ = strings.Cut(name, "=")
		if s := suggestFlags(cmd, name); len(s) > 0 {
			msg += "; did you mean " + quoteList(s) + "?"
		}
	}
	return &usageError{msg: msg}
}

// suggestFlags returns the flags of cmd whose names are within two edits
// of name, or that start with it.
func suggestFlags(cmd *cobra.Command, name string) []string {
	var out []string
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if f.Hidden || seen[f.Name] {
			return
		}
		if levenshtein(name, f.Name) <= 2 || (len(name) > 1 && strings.HasPrefix(f.Name, name)) {
			seen[f.Name] = true
			out = append(out, "--"+f.Name)
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	sort.Strings(out)
	return out
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = "'" + x + "'"
	}
	return strings.Join(q, " or ")
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// noArgs rejects positional arguments in one line.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// exactArgs wants n positional arguments, named by what for the message.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usagef("missing %s", what)
		case len(args) > n:
			return usagef("unexpected argument %q", args[n])
		}
		return nil
	}
}

// newShimCmd is the hidden `assay __exec`, see sandbox.Shim.
func newShimCmd(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                sandbox.ShimCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(sandbox.Shim(args, stderr))
		},
	}
}

// newInitCmd is the hidden `assay __init`, see sandbox.Init.
func newInitCmd(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                sandbox.InitCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(sandbox.Init(args, stderr))
		},
	}
}

// newWatchCmd is the hidden `assay __watch`, see sandbox.Watch.
func newWatchCmd(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                sandbox.WatchCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(sandbox.Watch(args, stderr))
		},
	}
}

// outputFlag is --output text|json, checked when parsed.
type outputFlag string

func (o *outputFlag) String() string { return string(*o) }
func (o *outputFlag) Type() string   { return "text|json" }
func (o *outputFlag) Set(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("unknown output format %q: use text or json", s)
	}
	*o = outputFlag(s)
	return nil
}
