package mcptest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/events"
)

// CallIDs returns the ids of the tools/call requests for tool the client
// sent in a session (r.Stdin) whose argument arg was value (any, when arg
// is ""), in order.
func CallIDs(t testing.TB, r Result, tool, arg string, value any) []json.RawMessage {
	t.Helper()
	msgs, err := ParseStream(r.Stdin)
	if err != nil {
		t.Fatalf("the client's stream: %v", err)
	}
	var ids []json.RawMessage
	for _, m := range msgs {
		if !m.IsRequest() || m.Method != "tools/call" {
			continue
		}
		var p struct {
			Name      string         `json:"name"`
			Arguments map[string]any `json:"arguments"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil {
			t.Fatalf("tools/call params %s: %v", m.Params, err)
		}
		if p.Name == tool && (arg == "" || p.Arguments[arg] == value) {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		t.Fatalf("the client sent no tools/call %s with %s=%s", tool, arg, value)
	}
	return ids
}

// CheckMCPContext checks that event e names exactly the tools/call
// requests with ids want (oldest first), each of tool... as the relay saw
// them. With text output ids compare by their text.
func CheckMCPContext(t testing.TB, e Event, want []json.RawMessage, tools ...string) {
	t.Helper()
	ok := len(e.MCP) == len(want)
	for i := 0; ok && i < len(want); i++ {
		c := e.MCP[i]
		ok = c.Method == "tools/call" && events.IDText(c.ID) == events.IDText(want[i])
		if i < len(tools) {
			ok = ok && c.Tool == tools[i]
		} else {
			ok = ok && c.Tool != ""
		}
	}
	if !ok {
		var ids []string
		for _, id := range want {
			ids = append(ids, string(id))
		}
		t.Errorf("event %s\nwant the MCP context of tools/call ids %s %v", e.Line, strings.Join(ids, ","), tools)
	}
}
