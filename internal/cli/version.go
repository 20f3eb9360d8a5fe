package cli

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X ...cli.version=v1.2.3"
// (the Makefile stamps `git describe`).
var version = ""

// Version returns the build's version: the linker-set one, else the module
// version or VCS revision Go recorded.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return v + " (" + s.Value[:12] + ")"
		}
	}
	return v
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print assay's version",
		Long: `Prints "assay VERSION": the 'git describe' of the build when built with
make, else the module version or VCS revision Go recorded.` + exitStatusSection(`
  0  printed
  2  a wrong command line`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(stdout, "assay", Version())
			return nil
		},
	}
}
