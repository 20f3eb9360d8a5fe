//go:build vmtest

package lsm_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/mcptest"
)

// The MCP end-to-end scenarios of test/mcp, here where BPF LSM is active:
// the MCP client (Go SDK) drives mcp-testserver, a static binary the
// harness puts at $ASSAY_MCP_TESTSERVER (/bin/mcp-testserver), under
// `assay run` over stdio.

// TestMCPFilesServer: file rules are enforced by BPF LSM (the report says
// bpf-lsm for both); read_file on an allowed file returns its content; on
// a file denied by an exact rule and on one inside a denied directory it is
// a tool error saying "operation not permitted", and each gives exactly
// one BLOCKED FILE event carrying its rule id, the file's (dev, ino), the
// command's cgroup and comm; the server keeps serving; stdout carries only
// JSON-RPC. JSON events from --events FILE (with --trace: the denied opens
// are also observed, with EPERM), and text events on stderr.
//
// With --mcp (assay relays the session), each BLOCKED FILE event also
// names the read_file call that caused it: mcp.tool read_file and mcp.id
// the id of that request, and no other call.
func TestMCPFilesServer(t *testing.T) {
	assay, server := assayBin(t), mcptest.ServerBinary(t)
	for _, out := range []string{mcptest.JSON, mcptest.Text} {
		for _, relay := range []bool{false, true} {
			name := out
			if relay {
				name += "/mcp"
			}
			t.Run(name, func(t *testing.T) {
				mcptest.FilesScenario(t, mcptest.FilesConfig{
					Assay:     assay,
					Server:    func(root string) []string { return []string{server, "files", root} },
					Output:    out,
					Mechanism: mcptest.MechBPFLSM,
					Comm:      "mcp-testserver",
					Trace:     out == mcptest.JSON,
					MCP:       relay,
				})
			})
		}
	}
}

// TestMCPFetchServer: the egress scenario in the guest: fetches from a
// denied port and a denied address are tool errors with BLOCKED CONNECT
// events naming the rule; allowed fetches before and after succeed.
func TestMCPFetchServer(t *testing.T) {
	mcptest.FetchScenario(t, mcptest.FetchConfig{
		Assay:  assayBin(t),
		Server: []string{mcptest.ServerBinary(t), "fetch"},
		Comm:   "mcp-testserver",
	})
}
