package mcp_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
	"github.com/assaymcp/assay/internal/policy"
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

// TestToolRulesNode: the reference npm filesystem server under `assay run
// --mcp` with mcp.tools.deny [write_file, "move_*", "edit_*"]: those tools
// are gone from tools/list, a write_file call is a JSON-RPC error naming
// the rule and never reaches the server (the file it would have written
// does not exist), read_text_file keeps working, and one BLOCKED TOOL
// event names the call.
func TestToolRulesNode(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	t.Parallel()
	mcptest.ToolRulesScenario(t, mcptest.ToolRulesConfig{
		Assay:   assay,
		Server:  func(root string) []string { return []string{node, script, root} },
		Rules:   `deny: [{tool: write_file, id: 60}, "move_*", "edit_*"]`,
		Refused: "write_file",
		RefusedArgs: func(root string) map[string]any {
			return map[string]any{"path": filepath.Join(root, "new.txt"), "content": "x"}
		},
		RuleID:      60,
		Hidden:      []string{"write_file", "move_file", "edit_file"},
		Kept:        []string{"read_text_file", "list_directory"},
		Allowed:     "read_text_file",
		AllowedArgs: func(root string) map[string]any { return map[string]any{"path": filepath.Join(root, "notes.txt")} },
		Unreached: func(t *testing.T, root string) {
			if _, err := os.Stat(filepath.Join(root, "new.txt")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused write_file reached the server: %v", err)
			}
		},
	})
}

// TestToolRulesGo: mcp-testserver files, which logs every request it
// receives, with an allow list that leaves read_file out
// (mcp.tools.allow: ["list_*"]): read_file is gone from tools/list, a
// read_file call is a JSON-RPC error under the implicit rule 1000100 and
// is not in the server's own log; in JSON and in text.
func TestToolRulesGo(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	t.Parallel()
	for _, out := range []string{mcptest.JSON, mcptest.Text} {
		t.Run(out, func(t *testing.T) {
			t.Parallel()
			mcptest.ToolRulesScenario(t, mcptest.ToolRulesConfig{
				Assay:       assay,
				Server:      func(root string) []string { return []string{server, "files", root} },
				Rules:       `allow: ["list_*"]`,
				Refused:     "read_file",
				RefusedArgs: func(root string) map[string]any { return map[string]any{"path": "notes.txt"} },
				RuleID:      policy.NotInAllowToolsID,
				Hidden:      []string{"read_file"},
				ServerLog:   true,
				Output:      out,
			})
		})
	}
}

// TestToolRulesNeedTheRelay: tool rules are enforced by the relay only:
// `assay run` without --mcp reports them NOT ENFORCED and does not start
// the command (exit 125) unless --allow-degraded; `assay monitor` refuses
// a policy with them.
func TestToolRulesNeedTheRelay(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	pol := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nmcp:\n  tools:\n    deny: [{tool: write_file, id: 5}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := assaytest.Run(t, "run", "--policy", pol, "--", "true")
	if r.ExitCode != 125 || !strings.Contains(r.StderrText(), "rule 5  deny_tool  write_file  NOT ENFORCED: tool rules are enforced by assay run --mcp") {
		t.Errorf("run without --mcp: exit %d\n%s", r.ExitCode, r.StderrText())
	}
	if r := assaytest.Run(t, "run", "--allow-degraded", "--policy", pol, "--", "true"); r.ExitCode != 0 {
		t.Errorf("run --allow-degraded without --mcp: exit %d\n%s", r.ExitCode, r.StderrText())
	}
	cg := assaytest.NewCgroup(t)
	m := assaytest.Run(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--duration", "1s")
	if m.ExitCode != 1 || !strings.Contains(m.StderrText(), "the mcp.tools rules are enforced by `assay run --mcp`") {
		t.Errorf("monitor with tool rules: exit %d\n%s", m.ExitCode, m.StderrText())
	}
}

// TestMetricsMCP: metrics scraped during an `assay run --mcp` session after
// a known sequence of calls (see mcptest.MetricsScenario).
func TestMetricsMCP(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	t.Parallel()
	mcptest.MetricsScenario(t, assay, []string{server, "fetch"})
}
