package mcp_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestNodeFilesystemServer: the reference filesystem server from npm
// (pinned), run by node under `assay run`, driven by the Go SDK client:
// initialize, tools/list, read_text_file on an allowed file (the content),
// on a file denied by an exact rule and on one in a denied directory (tool
// errors, no content), and allowed reads in between and after. With
// --trace, the denied opens show in the trace with their errno.
func TestNodeFilesystemServer(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	t.Parallel()
	mcptest.FilesScenario(t, mcptest.FilesConfig{
		Assay:  assay,
		Server: func(root string) []string { return []string{node, script, root} },
		Trace:  true,
	})
}

// TestGoFilesServer: the same scenario with mcp-testserver files, the
// server the vmtest guest runs (where it must give BPF LSM events), in both
// output formats.
func TestGoFilesServer(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	t.Parallel()
	for _, out := range []string{mcptest.JSON, mcptest.Text} {
		t.Run(out, func(t *testing.T) {
			t.Parallel()
			mcptest.FilesScenario(t, mcptest.FilesConfig{
				Assay:  assay,
				Server: func(root string) []string { return []string{server, "files", root} },
				Output: out,
				Comm:   "mcp-testserver",
				Trace:  out == mcptest.JSON,
			})
		})
	}
}

// TestNodeDeps installs the pinned reference servers (once; later runs find
// them in .cache/npm) and checks the Node.js they will run on. It needs no
// root: `make mcp-deps` can run it alone to warm the cache.
func TestNodeDeps(t *testing.T) {
	node, script := mcptest.NodeFilesystemServer(t)
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", node, err)
	}
	v := strings.TrimSpace(string(out))
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(v, "v"), ".", 2)[0])
	if major < mcptest.NodeMinMajor {
		t.Fatalf("node %s: the pinned servers need Node.js %d or later", v, mcptest.NodeMinMajor)
	}
	t.Logf("%s@%s on node %s: %s", mcptest.NodeFilesystemPackage, mcptest.NodeFilesystemVersion, v, script)
}
