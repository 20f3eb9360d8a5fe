// The mcp section: tool rules, enforced by `assay run --mcp`.

package policy

import (
	"strconv"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// NotInAllowToolsID is the reserved id of the implicit rule that refuses
// every tool not in mcp.tools.allow (when that list is given).
const NotInAllowToolsID uint32 = 1000100

// MaxToolPattern is the longest tool name or pattern accepted, in bytes.
const MaxToolPattern = 256

// Tool rule kinds returned in [Rule.Kind].
const (
	KindDenyTool        = "deny_tool"
	KindAllowTool       = "allow_tool"
	KindNotInAllowTools = "not_in_allow_tools"
)

// ToolRule is one mcp.tools.deny or mcp.tools.allow entry: a tool name, or
// a pattern where * stands for any run of characters and ? for one.
type ToolRule struct {
	ID      uint32
	Pattern string
	Line    int
}

// HasToolRules reports whether the policy has mcp.tools rules.
func (p *Policy) HasToolRules() bool { return len(p.ToolDeny) > 0 || p.ToolAllowList }

// ToolDecision says whether the tool called name is refused, and by which
// rule: the first mcp.tools.deny entry that matches, or, with an allow
// list, NotInAllowToolsID when no allow entry matches. Names are compared
// exactly (case matters), as MCP servers look tools up.
func (p *Policy) ToolDecision(name string) (ruleID uint32, denied bool) {
	for _, r := range p.ToolDeny {
		if MatchTool(r.Pattern, name) {
			return r.ID, true
		}
	}
	if !p.ToolAllowList {
		return 0, false
	}
	for _, r := range p.ToolAllow {
		if MatchTool(r.Pattern, name) {
			return r.ID, false
		}
	}
	return NotInAllowToolsID, true
}

// MatchTool reports whether name matches pattern (* any run of characters,
// ? one character, everything else itself).
func MatchTool(pattern, name string) bool {
	// Iterative wildcard matching with one backtrack point: linear in
	// practice, never exponential.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		if p < len(pattern) {
			switch pattern[p] {
			case '*':
				star, mark = p, n
				p++
				continue
			case '?':
				_, size := utf8.DecodeRuneInString(name[n:])
				p++
				n += size
				continue
			default:
				if pattern[p] == name[n] {
					p++
					n++
					continue
				}
			}
		}
		if star < 0 {
			return false
		}
		p = star + 1
		mark++
		n = mark
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func (ps *parser) mcpSection(n *yaml.Node, path string, pol *Policy) *Error {
	_, err := ps.walk(n, path, pol, section{name: "tools", parse: (*parser).mcpTools})
	return err
}

func (ps *parser) mcpTools(n *yaml.Node, path string, pol *Policy) *Error {
	if isNull(n) {
		return nil
	}
	tfs, err := ps.fields(n, path, "deny", "allow")
	if err != nil {
		return err
	}
	if len(tfs) == 2 {
		return ps.errf(tfs[1].val.Line, tfs[1].path, "mcp.tools takes deny or allow, not both: allow already refuses every tool it does not list")
	}
	for _, tf := range tfs {
		items, err := ps.list(tf.val, tf.path)
		if err != nil {
			return err
		}
		rules, err := ps.tools(items, tf.path)
		if err != nil {
			return err
		}
		if tf.name == "deny" {
			pol.ToolDeny = rules
		} else {
			pol.ToolAllow, pol.ToolAllowList = rules, true
		}
	}
	return nil
}

func (ps *parser) tools(items []*yaml.Node, path string) ([]ToolRule, *Error) {
	out := make([]ToolRule, 0, len(items))
	seen := map[string]int{}
	for i, it := range items {
		ip := index(path, i)
		vn, vp, idn, idp, err := ps.entry(it, ip, "tool", "a tool name")
		if err != nil {
			return nil, err
		}
		s, err := ps.str(vn, vp, "a tool name")
		if err != nil {
			return nil, err
		}
		if msg := checkToolPattern(s); msg != "" {
			return nil, ps.errf(vn.Line, vp, "%s", msg)
		}
		if line, dup := seen[s]; dup {
			return nil, ps.errf(vn.Line, vp, "tool %s already listed at line %d", quote(s), line)
		}
		seen[s] = vn.Line
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, ToolRule{ID: id, Pattern: s, Line: vn.Line})
	}
	return out, nil
}

func checkToolPattern(s string) string {
	switch {
	case s == "":
		return "a tool name cannot be empty"
	case len(s) > MaxToolPattern:
		return "a tool name is at most " + strconv.Itoa(MaxToolPattern) + " bytes"
	case !utf8.ValidString(s):
		return "a tool name must be valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return "a tool name cannot hold spaces or control characters: " + strconv.Quote(s)
		}
	}
	return ""
}

func toolRule(r ToolRule, kind string) Rule {
	return Rule{ID: r.ID, Kind: kind, Detail: r.Pattern, Line: r.Line}
}

var notInAllowToolsRule = Rule{ID: NotInAllowToolsID, Kind: KindNotInAllowTools, Detail: "tool not in mcp.tools.allow"}
