package mcptest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ToolRulesConfig is one run of ToolRulesScenario.
type ToolRulesConfig struct {
	Assay string
	// Server returns the command line of an MCP filesystem server serving
	// root.
	Server func(root string) []string
	// Rules is the policy's mcp section body under tools:, e.g.
	// "deny: [write_file]".
	Rules string
	// Refused is a call the rules refuse: its tool, arguments, and the id
	// of the rule that must refuse it.
	Refused     string
	RefusedArgs func(root string) map[string]any
	RuleID      uint32
	// Hidden are tools tools/list must no longer show; Kept tools it must
	// still show (and Allowed is called on an allowed one, which must work).
	Hidden, Kept []string
	Allowed      string
	AllowedArgs  func(root string) map[string]any
	// Unreached is checked after the session: nothing the refused call
	// would have done happened (e.g. a file it would have written).
	Unreached func(t *testing.T, root string)
	// ServerLog, if set, is the server's own record of the requests it
	// received (mcp-testserver with testserver.LogRequestsEnv).
	ServerLog bool
	Output    string
}

// ToolRulesScenario runs a server under `assay run --mcp` with tool rules
// and checks, through a real MCP session: the refused tools are missing
// from tools/list and the others are there; calling a refused tool is a
// JSON-RPC error naming the tool and the rule, with the request's id
// (the SDK matched it to its call), and never reaches the server (nothing
// it would do happens; the server's own log, when it has one, has no such
// call); an allowed call works before and after; one BLOCKED TOOL event
// names the tool, the rule and the request; the report says mcp-relay for
// the tool rules.
func ToolRulesScenario(t *testing.T, c ToolRulesConfig) {
	// The server runs as an unprivileged user: it can read the tree and
	// write in it (so a refused write that reached it would show), and
	// write its log.
	root := t.TempDir()
	assaytest.PublicDir(t, root)
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "notes.txt"), notesContent)
	policy := writePolicy(t, "version: 1\nmcp:\n  tools:\n    "+c.Rules+"\n")
	var env []string
	logFile := filepath.Join(root, ".server.log")
	if c.ServerLog {
		if err := os.WriteFile(logFile, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(logFile, 0o666); err != nil {
			t.Fatal(err)
		}
		env = append(os.Environ(), testserver.LogRequestsEnv+"="+logFile)
	}
	s := Start(t, Options{Assay: c.Assay, Policy: policy, Output: c.Output, Server: c.Server(root),
		Flags: []string{"--mcp"}, Env: env})
	tools := s.ToolNames()
	for _, h := range c.Hidden {
		if slices.Contains(tools, h) {
			t.Errorf("tools/list shows the refused tool %s: %q", h, tools)
		}
	}
	for _, k := range c.Kept {
		if !slices.Contains(tools, k) {
			t.Errorf("tools/list lacks the allowed tool %s: %q", k, tools)
		}
	}
	allowed := func() {
		t.Helper()
		if c.Allowed == "" {
			return
		}
		if res := s.Call(c.Allowed, c.AllowedArgs(root)); res.IsError || !strings.Contains(TextOf(res), strings.TrimSpace(notesContent)) {
			t.Errorf("the allowed %s: isError=%v %q", c.Allowed, res.IsError, TextOf(res))
		}
	}
	allowed()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: c.Refused, Arguments: c.RefusedArgs(root)})
	cancel()
	want := fmt.Sprintf("assay: tool %q is denied by the policy (rule %d)", c.Refused, c.RuleID)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("calling the refused %s: result %+v, error %v; want a JSON-RPC error saying %s", c.Refused, res, err, want)
	}
	allowed()
	r := s.Close()
	checkEnded(t, r, "initialize", "notifications/initialized", "tools/list", "tools/call")
	if c.Unreached != nil {
		c.Unreached(t, root)
	}
	if c.ServerLog {
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatalf("the server's log: %v", err)
		}
		log := string(b)
		if !strings.Contains(log, "initialize\n") || !strings.Contains(log, "tools/list\n") || strings.Contains(log, "tools/call "+c.Refused+"\n") {
			t.Errorf("the server's own log (want initialize and tools/list, no tools/call %s):\n%s", c.Refused, log)
		}
		if c.Allowed != "" && strings.Count(log, "tools/call "+c.Allowed+"\n") != 2 {
			t.Errorf("the server's own log lacks the two allowed calls:\n%s", log)
		}
	}
	var toolEvents []Event
	for _, e := range r.Events {
		if e.Kind == "tool" {
			toolEvents = append(toolEvents, e)
		} else {
			t.Errorf("unexpected event %s", e.Line)
		}
	}
	if len(toolEvents) != 1 {
		t.Fatalf("%d tool events, want 1:\n%s", len(toolEvents), eventLines(r.Events))
	}
	e := toolEvents[0]
	t.Logf("event: %s", e.Line)
	if e.Verdict != "blocked" || e.Tool != c.Refused || e.RuleID != c.RuleID || (c.Output != Text && e.CgroupID != r.Report.CgroupID) {
		t.Errorf("event %s\nwant BLOCKED TOOL name=%s rule_id=%d", e.Line, c.Refused, c.RuleID)
	}
	ids := CallIDs(t, r, c.Refused, "", nil)
	CheckMCPContext(t, e, ids, c.Refused)
	if got := r.Mechanism(c.RuleID); got != "mcp-relay" {
		t.Errorf("the report says %q for rule %d, want mcp-relay", got, c.RuleID)
	}
	checkSummary(t, r, 0, 0)
}
