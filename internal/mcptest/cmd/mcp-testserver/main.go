// Command mcp-testserver is the MCP tool server Assay's tests run under
// `assay run`, over stdio (newline-delimited JSON-RPC on stdin/stdout):
//
//	mcp-testserver files ROOT   read_file {path}: a file under ROOT, as text
//	mcp-testserver fetch        fetch {url}: HTTP GET, the body as text
//
// It exits 0 when the client closes stdin. With ASSAY_MCPTEST_LOG=FILE it
// appends every request it receives to FILE ("tools/call read_file"). Nothing but JSON-RPC is ever
// written to stdout; diagnostics go to stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const usage = "usage: mcp-testserver files ROOT | mcp-testserver fetch"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	var s *mcp.Server
	switch {
	case len(args) == 2 && args[0] == "files":
		root, err := filepath.Abs(args[1])
		if err != nil {
			fmt.Fprintln(stderr, "mcp-testserver:", err)
			return 2
		}
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			fmt.Fprintf(stderr, "mcp-testserver: %s is not a directory (%v)\n", root, err)
			return 2
		}
		s = testserver.NewFiles(root)
	case len(args) == 1 && args[0] == "fetch":
		s = testserver.NewFetch()
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if path := os.Getenv(testserver.LogRequestsEnv); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "mcp-testserver:", err)
			return 2
		}
		defer f.Close()
		testserver.LogRequests(s, f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx, &mcp.StdioTransport{}); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) && !errors.Is(err, mcp.ErrConnectionClosed) {
		fmt.Fprintln(stderr, "mcp-testserver:", err)
		return 1
	}
	return 0
}
