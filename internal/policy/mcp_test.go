package policy

import (
	"strings"
	"testing"
)

// TestToolRules: mcp.tools.deny refuses the tools it names or matches, by
// the first matching entry's id; mcp.tools.allow refuses every other tool
// under NotInAllowToolsID; ids are assigned after files.deny; the rules are
// listed with the others.
func TestToolRules(t *testing.T) {
	p := mustParse(t, `version: 1
files:
  deny: [/etc/shadow]
mcp:
  tools:
    deny: [write_file, "delete_*", {tool: "run_?", id: 70}]
`)
	for _, tc := range []struct {
		name   string
		id     uint32
		denied bool
	}{{"write_file", 2, true}, {"delete_file", 3, true}, {"delete_", 3, true}, {"run_x", 70, true}, {"run_xy", 0, false},
		{"read_file", 0, false}, {"Write_File", 0, false}, {"write_file2", 0, false}, {"", 0, false}} {
		if id, denied := p.ToolDecision(tc.name); id != tc.id || denied != tc.denied {
			t.Errorf("%q: rule %d denied %v, want %d %v", tc.name, id, denied, tc.id, tc.denied)
		}
	}
	if !p.HasToolRules() || !strings.Contains(p.Summary(), ", 3 tool rules,") {
		t.Errorf("summary %q", p.Summary())
	}
	if r, ok := p.RuleByID(3); !ok || r.Kind != KindDenyTool || r.Detail != "delete_*" || r.Line != 6 {
		t.Errorf("rule 3: %+v %v", r, ok)
	}

	a := mustParse(t, "version: 1\nmcp:\n  tools:\n    allow: [read_file, \"list_*\"]\n")
	for _, tc := range []struct {
		name   string
		id     uint32
		denied bool
	}{{"read_file", 1, false}, {"list_directory", 2, false}, {"write_file", NotInAllowToolsID, true}} {
		if id, denied := a.ToolDecision(tc.name); id != tc.id || denied != tc.denied {
			t.Errorf("allow %q: rule %d denied %v, want %d %v", tc.name, id, denied, tc.id, tc.denied)
		}
	}
	rules := a.Rules()
	if last := rules[len(rules)-1]; last.ID != NotInAllowToolsID || last.Kind != KindNotInAllowTools {
		t.Errorf("rules %+v", rules)
	}
	empty := mustParse(t, "version: 1\nmcp:\n  tools:\n    allow: []\n")
	if id, denied := empty.ToolDecision("anything"); !denied || id != NotInAllowToolsID {
		t.Errorf("an empty allow list lets %q through", "anything")
	}
	none := mustParse(t, "version: 1\nmcp:\n  tools:\n")
	if none.HasToolRules() || strings.Contains(none.Summary(), "tool") {
		t.Errorf("no tool rules: %q", none.Summary())
	}
}

func TestToolRuleErrors(t *testing.T) {
	for in, want := range map[string]string{
		"mcp:\n  tools:\n    deny: [a]\n    allow: [b]\n": "p.yaml:5: mcp.tools.allow: mcp.tools takes deny or allow, not both",
		"mcp:\n  tools:\n    deny: [a, a]\n":              "p.yaml:4: mcp.tools.deny[1]: tool \"a\" already listed at line 4",
		"mcp:\n  tools:\n    deny: [\"\"]\n":              "p.yaml:4: mcp.tools.deny[0]: a tool name cannot be empty",
		"mcp:\n  tools:\n    deny: [\"a b\"]\n":           "p.yaml:4: mcp.tools.deny[0]: a tool name cannot hold spaces",
		"mcp:\n  tools:\n    deny: [7]\n":                 "p.yaml:4: mcp.tools.deny[0]: ",
		"mcp:\n  tools:\n    block: [x]\n":                "p.yaml:4: mcp.tools.block: ",
		"mcp:\n  prompts: {}\n":                           "p.yaml:3: mcp.prompts: ",
		"mcp:\n  tools:\n    deny: [{tool: x, id: 0}]\n":  "p.yaml:4: mcp.tools.deny[0].id: ",
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+in))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q...", in, err, want)
		}
	}
}

func TestMatchTool(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true}, {"*", "x", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "abcbc", true}, {"a*b*c", "acb", false},
		{"?", "é", true}, {"??", "é", false}, {"x?z", "xyz", true}, {"*_file", "read_file", true}, {"*_file", "file", false},
		{strings.Repeat("*a", 20) + "b", strings.Repeat("a", 60), false},
	} {
		if got := MatchTool(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchTool(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}
