// Command assay enforces security policy on MCP tool servers in the kernel.
package main

import (
	"os"

	"github.com/assaymcp/assay/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
