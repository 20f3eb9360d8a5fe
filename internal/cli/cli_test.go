package cli

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run calls Main in-process and returns its status, stdout and stderr.
func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	status := Main(args, &out, &errb)
	return status, out.String(), errb.String()
}

// allCommands walks the command tree (hidden commands excluded).
func allCommands() []*cobra.Command {
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		out = append(out, c)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(Command(io.Discard, io.Discard))
	return out
}

// args splits a command path without the leading "assay".
func pathArgs(c *cobra.Command) []string {
	return strings.Fields(c.CommandPath())[1:]
}

// TestHelpEverywhere: --help and -h on every command exit 0, write to
// stdout only, and name every flag of the command and its exit statuses.
func TestHelpEverywhere(t *testing.T) {
	cmds := allCommands()
	if len(cmds) < 12 {
		t.Fatalf("only %d commands found", len(cmds))
	}
	for _, c := range cmds {
		for _, h := range []string{"--help", "-h"} {
			args := append(pathArgs(c), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				status, out, errs := run(args...)
				if status != 0 || errs != "" {
					t.Fatalf("status %d, stderr %q", status, errs)
				}
				if !strings.Contains(out, "Exit status:") {
					t.Errorf("help names no exit statuses:\n%s", out)
				}
				if !strings.Contains(out, "Usage:") {
					t.Errorf("help has no usage:\n%s", out)
				}
				c.LocalFlags().VisitAll(func(f *pflag.Flag) {
					if !strings.Contains(out, "--"+f.Name) {
						t.Errorf("help lacks --%s:\n%s", f.Name, out)
					}
				})
			})
		}
	}
	// The statuses each command documents.
	for args, want := range map[string][]string{
		"run":          {"125", "126", "127", "128+N"},
		"monitor":      {"0  ", "1  ", "2  ", "3  "},
		"doctor":       {"0  ", "1  "},
		"policy check": {"0  ", "1  ", "2  "},
	} {
		_, out, _ := run(append(strings.Fields(args), "--help")...)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("assay %s --help lacks exit status %q", args, w)
			}
		}
	}
}

// TestUsageErrors: a wrong command line is one line on stderr, naming the
// command and pointing to its --help, with a suggestion for a typo; exit 2
// (run: 125, since 2 may be CMD's own status). Nothing on stdout.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args   []string
		status int
		want   string // regexp the one line must match
	}{
		{[]string{"moniter"}, 2, `^assay: unknown command "moniter"; did you mean 'monitor'\? \(see 'assay --help'\)$`},
		{[]string{"monitor", "--polcy", "p.yaml"}, 2, `^assay monitor: unknown flag: --polcy; did you mean '--policy'\?`},
		{[]string{"monitor", "--polcy=p.yaml", "--all"}, 2, `did you mean '--policy'\?`},
		{[]string{"status", "--outptu", "json"}, 2, `^assay status: unknown flag: --outptu; did you mean '--output'\?`},
		{[]string{"status", "--output", "yaml"}, 2, `^assay status: invalid argument "yaml" for "--output" flag: unknown output format "yaml": use text or json`},
		{[]string{"doctor", "extra"}, 2, `^assay doctor: unexpected argument "extra"`},
		{[]string{"detach"}, 2, `^assay detach: missing NAME`},
		{[]string{"detach", "a", "b"}, 2, `^assay detach: unexpected argument "b"`},
		{[]string{"reload", "NAME"}, 2, `^assay reload: missing --policy FILE`},
		{[]string{"reload", "--policy", "p.yaml"}, 2, `^assay reload: missing NAME`},
		{[]string{"policy", "chek", "p.yaml"}, 2, `^assay policy: unknown command "chek"; did you mean 'check'\?`},
		{[]string{"policy", "check"}, 2, `^assay policy check: missing the policy FILE`},
		{[]string{"version", "--short"}, 2, `^assay version: unknown flag: --short`},
		{[]string{"monitor", "--all", "--cgroup", "x"}, 2, `^assay monitor: --all judges the whole host`},
		{[]string{"monitor"}, 2, `^assay monitor: no scope`},
		{[]string{"monitor", "--policy"}, 2, `^assay monitor: flag needs an argument: --policy`},
		{[]string{"run", "--polcy", "p.yaml", "--", "true"}, 125, `^assay run: unknown flag: --polcy; did you mean '--policy'\?`},
		{[]string{"run", "--policy", "p.yaml"}, 125, `^assay run: no command`},
		{[]string{"run", "--output", "yaml", "--", "true"}, 125, `^assay run: invalid argument "yaml" for "--output"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			status, out, errs := run(c.args...)
			if status != c.status {
				t.Errorf("status %d, want %d", status, c.status)
			}
			if out != "" {
				t.Errorf("stdout: %q", out)
			}
			lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
			if len(lines) != 1 || !regexp.MustCompile(c.want).MatchString(lines[0]) {
				t.Errorf("stderr, want one line matching %s:\n%s", c.want, errs)
			}
		})
	}
	// A group command alone shows its help on stderr, exit 2.
	for _, args := range [][]string{{}, {"policy"}} {
		status, out, errs := run(args...)
		if status != 2 || out != "" || !strings.Contains(errs, "Usage:") {
			t.Errorf("assay %q: status %d, stdout %q, stderr:\n%s", args, status, out, errs)
		}
	}
}

// TestFlagPositions: flags go before or after positional arguments, as
// --flag value or --flag=value; run's flags stop at CMD.
func TestFlagPositions(t *testing.T) {
	for _, args := range [][]string{
		{"reload", "NAME", "--policy", "P"},
		{"reload", "--policy", "P", "NAME"},
		{"reload", "--policy=P", "NAME"},
		{"reload", "NAME", "--policy=P"},
	} {
		var name, pol string
		root := Command(io.Discard, io.Discard)
		for _, c := range root.Commands() {
			if c.Name() == "reload" {
				c.RunE = func(cmd *cobra.Command, a []string) error {
					name = a[0]
					pol, _ = cmd.Flags().GetString("policy")
					return nil
				}
			}
		}
		root.SetArgs(args)
		if err := root.Execute(); err != nil || name != "NAME" || pol != "P" {
			t.Errorf("%q: err %v, name %q, policy %q", args, err, name, pol)
		}
	}
	// run: everything from CMD on is CMD's.
	root := Command(io.Discard, io.Discard)
	var argv []string
	var audit bool
	for _, c := range root.Commands() {
		if c.Name() == "run" {
			c.RunE = func(cmd *cobra.Command, a []string) error {
				argv = a
				audit, _ = cmd.Flags().GetBool("audit")
				return nil
			}
		}
	}
	root.SetArgs([]string{"run", "--audit", "sh", "-c", "x", "--audit"})
	if err := root.Execute(); err != nil || !audit || strings.Join(argv, " ") != "sh -c x --audit" {
		t.Errorf("run: err %v, audit %v, argv %q", err, audit, argv)
	}
}

// TestVersion: `assay version` and `assay --version` print the same line.
func TestVersion(t *testing.T) {
	s1, o1, _ := run("version")
	s2, o2, _ := run("--version")
	if s1 != 0 || s2 != 0 || o1 != o2 || !strings.HasPrefix(o1, "assay ") {
		t.Errorf("version: %d %q; --version: %d %q", s1, o1, s2, o2)
	}
}

// TestCompletion: the shells' completion scripts are generated.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_assay", "zsh": "#compdef assay", "fish": "complete -c assay"} {
		status, out, errs := run("completion", shell)
		if status != 0 || errs != "" || !strings.Contains(out, want) {
			t.Errorf("completion %s: status %d, stderr %q, script lacks %q", shell, status, errs, want)
		}
	}
}

// TestUnits: sizes and durations with and without units; what a bare
// number means; refusals name the accepted forms.
func TestUnits(t *testing.T) {
	for in, want := range map[string]int{
		"4096": 4096, "1M": 1 << 20, "16MiB": 16 << 20, "256k": 256 << 10, "1G": 1 << 30, "64 KiB": 64 << 10, "512b": 512,
	} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int(s) != want {
			t.Errorf("size %q: %d, %v; want %d", in, s, err, want)
		}
	}
	for in, want := range map[string]string{
		"16MB": "decimal units are not accepted", "1T": "unknown unit", "M": "not a size", "-1": "not a size", "99999999999G": "too large",
	} {
		var s sizeFlag
		if err := s.Set(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("size %q: %v, want an error containing %q", in, err, want)
		}
	}
	for in, want := range map[string]time.Duration{
		"5": 5 * time.Second, "5s": 5 * time.Second, "2m": 2 * time.Minute, "1h30m": 90 * time.Minute, "500ms": 500 * time.Millisecond, "0": 0,
	} {
		var d durationFlag
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("duration %q: %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"5 parsecs", "-5s", "x", "1.5"} {
		var d durationFlag
		if err := d.Set(in); err == nil {
			t.Errorf("duration %q accepted as %v", in, time.Duration(d))
		}
	}
	// On the command line: a bad value is a usage error naming the flag.
	status, _, errs := run("monitor", "--duration", "5 parsecs", "--all")
	if status != 2 || !strings.Contains(errs, `invalid argument "5 parsecs" for "--duration" flag`) || !strings.Contains(errs, "a number of seconds") {
		t.Errorf("--duration 5 parsecs: status %d, stderr %q", status, errs)
	}
	status, _, errs = run("run", "--ring-size", "16MB", "--", "true")
	if status != 125 || !strings.Contains(errs, "use MiB") {
		t.Errorf("--ring-size 16MB: status %d, stderr %q", status, errs)
	}
}
