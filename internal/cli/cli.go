// Package cli implements the assay command line.
package cli

import (
	"fmt"
	"io"
	"strings"

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

const usage = `assay - kernel-enforced policy for MCP tool servers

Usage:
  assay monitor --policy FILE (--cgroup PATH | --pid PID ... | --all) [flags]
  assay run [--policy FILE] [flags] -- CMD [ARGS...]
  assay doctor [--output json]
  assay status [--output json]
  assay reload NAME --policy FILE
  assay detach NAME
  assay policy check FILE
  assay policy example
  assay version

Run 'assay monitor --help' or 'assay run --help' for their flags.
`

// Main runs the command line and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "monitor":
		return monitorCmd(args[1:], stdout, stderr)
	case "policy":
		return policyCmd(args[1:], stdout, stderr)
	case "run":
		return runCmd(args[1:], stdout, stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "detach":
		return detachCmd(args[1:], stdout, stderr)
	case "reload":
		return reloadCmd(args[1:], stdout, stderr)
	case "doctor":
		return doctorCmd(args[1:], stdout, stderr)
	case sandbox.ShimCommand:
		return shimCmd(args[1:], stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "assay", Version())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "assay: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// fail prints one line, prefixed with the program name, and returns status.
func fail(stderr io.Writer, status int, err error) int {
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintln(stderr, "assay: "+msg)
	return status
}
