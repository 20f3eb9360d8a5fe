package mcp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/assaymcp/assay/internal/events"
)

// MaxLine is the longest line the relay reads as a message; longer lines
// from the server are passed through unread, longer lines from the client
// are passed through unread without tool rules and refused with them.
const MaxLine = 64 << 20

// ToolRules decide a tool by name: the id of the rule that refuses it, and
// whether it is refused.
type ToolRules func(name string) (ruleID uint32, denied bool)

// ErrorCode is the JSON-RPC error code of a tools/call refused by the
// policy (in the range JSON-RPC leaves to implementations).
const ErrorCode = -32003

// Tool call outcomes, as reported to OnCall.
const (
	OutcomeOK        = "ok"        // answered with a result that is not an error
	OutcomeError     = "error"     // answered with a JSON-RPC error or a result with isError
	OutcomeBlocked   = "blocked"   // refused by a tool rule; the server never saw it
	OutcomeCancelled = "cancelled" // the client cancelled it before an answer came
)

// Decision is a tools/call a tool rule refused (or, in audit mode, would
// have refused).
type Decision struct {
	Call   events.MCPCall
	RuleID uint32
	Audit  bool   // audit mode: forwarded all the same
	Mono   uint64 // when (CLOCK_MONOTONIC ns)
}

// Relay carries one stdio session. Set the fields, then Run.
type Relay struct {
	ClientIn  io.Reader      // what the client writes (assay's stdin)
	ClientOut io.Writer      // what the client reads (assay's stdout)
	ServerIn  io.WriteCloser // the server's stdin; closed when the client's input ends
	ServerOut io.Reader      // the server's stdout

	Tracker *Tracker
	Rules   ToolRules // nil: no tool rules
	Audit   bool      // report what the rules would refuse, refuse nothing

	// OnDecision is called for every tools/call a rule refuses (or would).
	OnDecision func(Decision)
	// OnCall is called once per tools/call with its outcome.
	OnCall func(tool, outcome string)

	// MaxLine overrides the package's MaxLine (tests); 0: MaxLine.
	MaxLine int

	outMu sync.Mutex // one writer of ClientOut at a time, whole lines
}

func (r *Relay) maxLine() int {
	if r.MaxLine > 0 {
		return r.MaxLine
	}
	return MaxLine
}

// Run relays until the server's output ends (its stdout closed: it exited)
// and returns the first error writing to the client. The client-to-server
// direction keeps running in the background until the client's input ends
// or the server's input is closed.
func (r *Relay) Run() error {
	if r.Tracker == nil {
		r.Tracker = NewTracker()
	}
	go func() {
		_ = r.fromClient()
		_ = r.ServerIn.Close()
	}()
	err := r.fromServer()
	if err != nil {
		// The client is gone: let the server see EPIPE rather than block
		// on a full pipe nobody reads.
		if c, ok := r.ServerOut.(io.Closer); ok {
			c.Close()
		}
	}
	return err
}

// scan reads lines from rd: line gets every complete line (with its
// newline; at EOF the rest without one), long the pieces of a line longer
// than max (end: its last piece).
func scan(rd io.Reader, max int, line func([]byte) error, long func(piece []byte, end bool) error) error {
	br := bufio.NewReaderSize(rd, 64<<10)
	var acc []byte
	inLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		eof := err != nil && !errors.Is(err, bufio.ErrBufferFull)
		complete := err == nil
		var werr error
		switch {
		case inLong:
			if len(chunk) > 0 || eof {
				werr = long(chunk, complete || eof)
			}
			if complete {
				inLong = false
			}
		default:
			acc = append(acc, chunk...)
			if complete || (eof && len(acc) > 0) {
				werr = line(acc)
				acc = acc[:0]
			} else if len(acc) > max {
				inLong = true
				werr = long(acc, false)
				acc = acc[:0]
			}
		}
		if werr != nil {
			return werr
		}
		if eof {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (r *Relay) fromServer() error {
	var longCall bool
	return scan(r.ServerOut, r.maxLine(), func(line []byte) error {
		out := r.inspectServer(line)
		return r.writeClient(out)
	}, func(piece []byte, end bool) error {
		if !longCall {
			longCall = true
			r.outMu.Lock()
		}
		_, err := r.ClientOut.Write(piece)
		if end {
			longCall = false
			r.outMu.Unlock()
		}
		return err
	})
}

func (r *Relay) writeClient(b []byte) error {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	_, err := r.ClientOut.Write(b)
	return err
}

func (r *Relay) fromClient() error {
	refusing := false
	return scan(r.ClientIn, r.maxLine(), func(line []byte) error {
		out, replies, cancels := r.inspectClient(line)
		for _, rep := range replies {
			if err := r.writeClient(rep); err != nil {
				return err
			}
		}
		var err error
		if out != nil {
			_, err = r.ServerIn.Write(out)
		}
		// A cancelled request is over once the server was told.
		for _, k := range cancels {
			if c, ok := r.Tracker.End(k); ok && c.Method == "tools/call" && r.OnCall != nil {
				r.OnCall(c.Tool, OutcomeCancelled)
			}
		}
		return err
	}, func(piece []byte, end bool) error {
		if r.Rules != nil && !r.Audit {
			// A message too long to read could be a refused tools/call.
			if !refusing {
				refusing = true
				if err := r.writeClient(errorLine(nil, -32600, fmt.Sprintf("assay: a message longer than %d bytes cannot be checked against the policy's tool rules; not forwarded", r.maxLine()), nil)); err != nil {
					return err
				}
			}
			if end {
				refusing = false
			}
			return nil
		}
		_, err := r.ServerIn.Write(piece)
		return err
	})
}

// object is a JSON-RPC message with its members as sent (exact names).
type object map[string]json.RawMessage

func (o object) str(name string) (string, bool) {
	raw, ok := o[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// decode parses a line as one message or a batch (array) of messages; ok
// is false when it is not JSON, or the array holds a non-object. The
// messages' members are slices of line (jsonscan.go): valid until the
// relay reads the next line.
func decode(line []byte) (msgs []object, batch, ok bool) {
	t := bytes.TrimSpace(line)
	if len(t) == 0 {
		return nil, false, false
	}
	if t[0] == '[' {
		if !validJSON(t) {
			return nil, true, false
		}
		raw, _ := elements(t)
		for _, m := range raw {
			o, isObj := members(m)
			if !isObj {
				return nil, true, false
			}
			msgs = append(msgs, o)
		}
		return msgs, true, true
	}
	if !validJSON(t) {
		return nil, false, false
	}
	o, isObj := members(t)
	if !isObj {
		return nil, false, false
	}
	return []object{o}, false, true
}

// inspectClient follows one line from the client and returns what to
// forward (nil: nothing), the lines to answer the client with, and the
// requests the client cancels in it (to end once it was forwarded).
func (r *Relay) inspectClient(line []byte) (out []byte, replies [][]byte, cancels []string) {
	msgs, batch, ok := decode(line)
	if !ok {
		if r.Rules != nil && !r.Audit && len(bytes.TrimSpace(line)) > 0 {
			// Not JSON to us but maybe to a laxer parser in the server:
			// it could hide a refused tools/call.
			return nil, [][]byte{errorLine(nil, -32700, "assay: not valid JSON; with tool rules in the policy, only valid JSON-RPC reaches the server", nil)}, nil
		}
		return line, nil, nil
	}
	var kept []object
	var refused [][]byte
	type begin struct {
		c   events.MCPCall
		key string
	}
	var begins []begin
	for _, m := range msgs {
		method, isMethod := m.str("method")
		id, hasID := m["id"]
		if !isMethod {
			kept = append(kept, m)
			continue
		}
		var c events.MCPCall
		c.Method = method
		if hasID {
			c.ID = compact(id)
		}
		if method == "tools/call" {
			name, named := toolName(m)
			c.Tool = name
			if r.Rules != nil {
				rule, denied := r.Rules(name)
				if !named {
					denied = true
				}
				if denied {
					r.decide(Decision{Call: c, RuleID: rule, Audit: r.Audit, Mono: Monotonic()})
					if !r.Audit {
						if r.OnCall != nil {
							r.OnCall(name, OutcomeBlocked)
						}
						if hasID {
							msg := fmt.Sprintf("assay: tool %q is denied by the policy (rule %d)", name, rule)
							if !named {
								msg = "assay: a tools/call without a tool name cannot be checked against the policy's tool rules; refused"
							}
							refused = append(refused, errorBody(id, ErrorCode, msg, map[string]any{"tool": name, "rule_id": rule}))
						}
						continue
					}
				}
			}
			if !hasID && r.OnCall != nil {
				r.OnCall(name, OutcomeOK) // a notification: no answer will come
			}
		}
		if method == "notifications/cancelled" {
			if p := params(m); p != nil {
				if rid, ok := p["requestId"]; ok {
					cancels = append(cancels, idKey(rid))
				}
			}
		}
		if hasID {
			begins = append(begins, begin{c, idKey(id)})
		}
		kept = append(kept, m)
	}
	for _, b := range begins {
		r.Tracker.Begin(b.c, b.key)
	}
	if len(refused) > 0 {
		if batch {
			replies = [][]byte{append(append([]byte{'['}, bytes.Join(refused, []byte{','})...), ']', '\n')}
		} else {
			replies = [][]byte{append(refused[0], '\n')}
		}
	}
	if len(kept) == len(msgs) {
		return line, replies, cancels
	}
	if len(kept) == 0 {
		return nil, replies, cancels
	}
	// A batch without its refused calls.
	raws := make([][]byte, len(kept))
	for i, m := range kept {
		raws[i], _ = json.Marshal(m)
	}
	return append(append([]byte{'['}, bytes.Join(raws, []byte{','})...), ']', '\n'), replies, cancels
}

func (r *Relay) decide(d Decision) {
	if r.OnDecision != nil {
		r.OnDecision(d)
	}
}

func params(m object) object {
	raw, ok := m["params"]
	if !ok {
		return nil
	}
	p, _ := members(raw)
	return p
}

// toolName is params.name of a tools/call; named is false when it is not
// a string.
func toolName(m object) (name string, named bool) {
	p := params(m)
	if p == nil {
		return "", false
	}
	return p.str("name")
}

// inspectServer follows one line from the server and returns what to
// forward.
func (r *Relay) inspectServer(line []byte) []byte {
	msgs, batch, ok := decode(line)
	if !ok {
		return line
	}
	changed := false
	for i, m := range msgs {
		if _, isMethod := m["method"]; isMethod {
			continue // a request or notification of the server's
		}
		id, hasID := m["id"]
		if hasID {
			if c, ok := r.Tracker.End(idKey(id)); ok && c.Method == "tools/call" && r.OnCall != nil {
				r.OnCall(c.Tool, outcome(m))
			}
		}
		if r.Rules != nil {
			if nm, ok := r.filterTools(m); ok {
				msgs[i] = nm
				changed = true
			}
		}
	}
	if !changed {
		return line
	}
	var out []byte
	if batch {
		raws := make([][]byte, len(msgs))
		for i, m := range msgs {
			raws[i], _ = json.Marshal(m)
		}
		out = append(append([]byte{'['}, bytes.Join(raws, []byte{','})...), ']')
	} else {
		out, _ = json.Marshal(msgs[0])
	}
	return append(out, '\n')
}

// filterTools removes the refused tools from a result with a "tools" list
// (tools/list) and reports whether it removed any.
func (r *Relay) filterTools(m object) (object, bool) {
	raw, ok := m["result"]
	if !ok {
		return nil, false
	}
	res, ok := members(raw)
	if !ok {
		return nil, false
	}
	if raw, ok = res["tools"]; !ok {
		return nil, false
	}
	tools, _ := elements(raw)
	kept := tools[:0:0]
	for _, t := range tools {
		if tool, ok := members(t); ok {
			if name, ok := tool.str("name"); ok {
				if _, denied := r.Rules(name); denied && !r.Audit {
					continue
				}
			}
		}
		kept = append(kept, t)
	}
	if len(kept) == len(tools) {
		return nil, false
	}
	res["tools"], _ = json.Marshal(kept)
	out := object{}
	for k, v := range m {
		out[k] = v
	}
	out["result"], _ = json.Marshal(res)
	return out, true
}

// outcome of a response to a tools/call: an error, or a result whose
// isError is true. As encoding/json would decode result into a struct
// with a bool field isError: the member's name matches case-insensitively,
// the last matching member counts, null leaves it false, and a value of
// another type (or a result that is not an object) decodes nothing.
func outcome(m object) string {
	if _, ok := m["error"]; ok {
		return OutcomeError
	}
	raw, ok := m["result"]
	if !ok {
		return OutcomeOK
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return OutcomeOK
	}
	isError := false
	// Member by member in order (a map would lose repeated names).
	i := skipSpace(t, 1)
	for i < len(t) && t[i] == '"' {
		end, escaped, _ := scanString(t, i)
		name := memberName(t[i:end], escaped)
		i = skipSpace(t, skipSpace(t, end)+1)
		vend := skipValue(t, i)
		if strings.EqualFold(name, "isError") {
			switch string(t[i:vend]) {
			case "true":
				isError = true
			case "false":
				isError = false
			case "null":
			default:
				return OutcomeOK // encoding/json: a type error
			}
		}
		i = skipSpace(t, vend)
		if i < len(t) && t[i] == ',' {
			i = skipSpace(t, i+1)
		}
	}
	if isError {
		return OutcomeError
	}
	return OutcomeOK
}

// compact returns a JSON value without insignificant whitespace, in a new
// buffer (raw may be a slice of a line the relay reuses).
func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return b.Bytes()
}

// idKey is the canonical form of a JSON-RPC id, so that a response's id
// matches its request's however either side spells it: a string by its
// value, a number by its value ("7", "7.0" and "7e0" are one id).
func idKey(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return "s" + s
		}
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return "n" + strconv.FormatInt(n, 10)
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil && !math.IsInf(f, 0) {
		if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return "n" + strconv.FormatInt(int64(f), 10)
		}
		return "n" + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return "r" + string(compact(raw))
}

func errorBody(id json.RawMessage, code int, msg string, data any) []byte {
	type rpcError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}
	if id == nil {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{"2.0", compact(id), rpcError{code, msg, data}})
	return b
}

func errorLine(id json.RawMessage, code int, msg string, data any) []byte {
	return append(errorBody(id, code, msg, data), '\n')
}
