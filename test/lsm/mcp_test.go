//go:build vmtest

package lsm_test

import (
	"os"
	"testing"

	"github.com/assaymcp/assay/internal/mcptest"
	"github.com/assaymcp/assay/internal/testenv"
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
			// One level of names (json_mcp, not json/mcp): the arm64
			// guest's default set (test/vm/vm.mk) selects one case.
			name := out
			if relay {
				name += "_mcp"
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

// TestMCPNodeFilesServerV2: the reference filesystem server from npm
// (internal/mcptest/npm's pinned install, which test/vm/run.sh puts at
// /opt/mcp on the runtime image) started by the host's node under a least-
// privilege version 2 policy with BPF LSM (default deny, the runtime
// baseline, the projects root rw, /opt/mcp rx, ROOT/.env denied) and
// --mcp, driven by the Go SDK client: read, write, edit, create_directory,
// move, search and list inside the projects root work; reading a file in a
// second root the server serves but the policy does not allow, writing a
// new file there, reading .env and writing over it are refused by the
// kernel (EPERM) with BLOCKED FILE events naming the file's inode, the
// deciding rule (1000002, or .env's) and the tools/call; and nothing else
// of the session is refused (not node's start, not the server's code). The
// host runs the same scenario under Landlock (test/mcp
// TestNodeFilesystemServerV2), without .env (a hole Landlock cannot make
// in an rw tree).
func TestMCPNodeFilesServerV2(t *testing.T) {
	node, _ := guestRuntime(t)
	if node == "" {
		t.Skip("no node in this guest")
	}
	code := os.Getenv("ASSAY_NODE_FS_DIR")
	if code == "" {
		testenv.Skip(t, "the guest has no npm filesystem server (ASSAY_NODE_FS_DIR): test/vm/run.sh could not install it (npm ci)")
	}
	script := mcptest.NodeFilesystemScript(t, code)
	mcptest.FilesV2Scenario(t, mcptest.FilesV2Config{
		Assay:     assayBin(t),
		Code:      code,
		Server:    func(code, root, outside string) []string { return []string{node, script, root, outside} },
		MCP:       true,
		Mechanism: mcptest.MechBPFLSM,
		// Node.js under TCG: its start alone takes many seconds, a minute
		// on a loaded machine.
		Slow: 4,
	})
}
