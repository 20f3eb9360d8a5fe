package events

import (
	"encoding/json"
	"errors"
	"strconv"
)

// MCPCall is one MCP request in flight: its method, the tool for
// tools/call, and its JSON-RPC id exactly as the client sent it (a JSON
// number or string, compacted).
type MCPCall struct {
	Method string          `json:"method"`
	Tool   string          `json:"tool,omitempty"`
	ID     json.RawMessage `json:"id"`
}

// MCPContext is the "mcp" field of a JSON event: one object when one
// request was in flight, an array when several were.
type MCPContext []MCPCall

// MarshalJSON writes one call as an object, several as an array.
func (c MCPContext) MarshalJSON() ([]byte, error) {
	return appendMCPJSON(nil, c), nil
}

// UnmarshalJSON reads an object or an array of objects.
func (c *MCPContext) UnmarshalJSON(b []byte) error {
	for _, ch := range b {
		switch ch {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			var one MCPCall
			if err := json.Unmarshal(b, &one); err != nil {
				return err
			}
			*c = MCPContext{one}
			return nil
		case '[':
			var many []MCPCall
			if err := json.Unmarshal(b, &many); err != nil {
				return err
			}
			*c = many
			return nil
		}
		break
	}
	return errors.New("mcp: want an object or an array")
}

func appendMCPCallJSON(b []byte, c MCPCall) []byte {
	b = append(b, `{"method":`...)
	b = appendJSONString(b, c.Method)
	if c.Tool != "" {
		b = append(b, `,"tool":`...)
		b = appendJSONString(b, c.Tool)
	}
	b = append(b, `,"id":`...)
	if len(c.ID) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, c.ID...)
	}
	return append(b, '}')
}

func appendMCPJSON(b []byte, c []MCPCall) []byte {
	if len(c) == 1 {
		return appendMCPCallJSON(b, c[0])
	}
	b = append(b, '[')
	for i, one := range c {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMCPCallJSON(b, one)
	}
	return append(b, ']')
}

// appendMCPText appends the text form of an event's MCP context: for each
// request in flight, oldest first, " tool=NAME mcp_id=ID" (tools/call) or
// " mcp_method=METHOD mcp_id=ID" (any other request).
func appendMCPText(b []byte, calls []MCPCall) []byte {
	for _, c := range calls {
		if c.Method == "tools/call" {
			b = append(b, " tool="...)
			b = appendValue(b, c.Tool)
		} else {
			b = append(b, " mcp_method="...)
			b = appendValue(b, c.Method)
		}
		b = append(b, " mcp_id="...)
		b = appendValue(b, IDText(c.ID))
	}
	return b
}

// IDText is a JSON-RPC id for text: a string id's value, a number as sent.
func IDText(id json.RawMessage) string {
	if len(id) > 0 && id[0] == '"' {
		var s string
		if json.Unmarshal(id, &s) == nil {
			return s
		}
	}
	return string(id)
}

// toolText is the body of a tool event's line.
func appendToolText(b []byte, e Event) []byte {
	b = append(b, "name="...)
	b = appendValue(b, e.Tool)
	b = append(b, " cgroup="...)
	b = strconv.AppendUint(b, e.CgroupID, 10)
	b = append(b, " rule_id="...)
	return strconv.AppendUint(b, uint64(e.RuleID), 10)
}
