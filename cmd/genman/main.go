// Command genman writes assay's man pages (section 1), generated from the
// same cobra definitions that parse the command line: `make man`.
//
//	go run ./cmd/genman DIR
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra/doc"

	"github.com/assaymcp/assay/internal/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genman DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
	root := cli.Command(io.Discard, io.Discard)
	root.DisableAutoGenTag = true // reproducible: no generation date
	hdr := &doc.GenManHeader{Title: "ASSAY", Section: "1", Source: "assay " + cli.Version(), Manual: "Assay Manual"}
	if err := doc.GenManTree(root, hdr, dir); err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
}
