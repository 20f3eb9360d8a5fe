package mcp_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestFetchEgressMCP: the egress scenario under `assay run --mcp`: assay
// relays the session (every byte both ways is still clean JSON-RPC, every
// request answered once) and each BLOCKED CONNECT event names the fetch
// call that caused it, by tool and request id, in JSON and in text.
func TestFetchEgressMCP(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	t.Parallel()
	for _, out := range []string{mcptest.JSON, mcptest.Text} {
		t.Run(out, func(t *testing.T) {
			t.Parallel()
			mcptest.FetchScenario(t, mcptest.FetchConfig{
				Assay:  assay,
				Server: []string{server, "fetch"},
				Output: out,
				Comm:   "mcp-testserver",
				MCP:    true,
			})
		})
	}
}

// TestNodeFilesystemServerMCP: the reference npm filesystem server under
// `assay run --mcp`: the relay carries its session unchanged (Landlock
// enforces the file rules on this host; the BLOCKED FILE events with their
// MCP context are asserted in the BPF-LSM guest, test/lsm).
func TestNodeFilesystemServerMCP(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	t.Parallel()
	mcptest.FilesScenario(t, mcptest.FilesConfig{
		Assay:  assay,
		Server: func(root string) []string { return []string{node, script, root} },
		MCP:    true,
	})
}

// TestConcurrentCallsMCP: two fetch calls in flight at once; the blocked
// connect of one names both (see mcptest.ConcurrentScenario).
func TestConcurrentCallsMCP(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	t.Parallel()
	mcptest.ConcurrentScenario(t, assay, []string{server, "fetch"})
}
