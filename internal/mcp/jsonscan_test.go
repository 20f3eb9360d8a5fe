package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The relay's reading with encoding/json, as it was before jsonscan.go:
// the reference the scanner must agree with.

func decodeStd(line []byte) (msgs []object, batch, ok bool) {
	t := bytes.TrimSpace(line)
	if len(t) == 0 {
		return nil, false, false
	}
	if t[0] == '[' {
		var raw []json.RawMessage
		if json.Unmarshal(t, &raw) != nil {
			return nil, true, false
		}
		for _, m := range raw {
			var o object
			if json.Unmarshal(m, &o) != nil || o == nil {
				return nil, true, false
			}
			msgs = append(msgs, o)
		}
		return msgs, true, true
	}
	var o object
	if json.Unmarshal(t, &o) != nil || o == nil {
		return nil, false, false
	}
	return []object{o}, false, true
}

func paramsStd(m object) object {
	var p object
	if raw, ok := m["params"]; !ok || json.Unmarshal(raw, &p) != nil {
		return nil
	}
	return p
}

func outcomeStd(m object) string {
	if _, ok := m["error"]; ok {
		return OutcomeError
	}
	var res struct {
		IsError bool `json:"isError"`
	}
	if raw, ok := m["result"]; ok && json.Unmarshal(raw, &res) == nil && res.IsError {
		return OutcomeError
	}
	return OutcomeOK
}

// filterToolsStd is filterTools as it was.
func (r *Relay) filterToolsStd(m object) (object, bool) {
	var res object
	if raw, ok := m["result"]; !ok || json.Unmarshal(raw, &res) != nil || res == nil {
		return nil, false
	}
	var tools []json.RawMessage
	if raw, ok := res["tools"]; !ok || json.Unmarshal(raw, &tools) != nil {
		return nil, false
	}
	kept := tools[:0:0]
	for _, t := range tools {
		var tool object
		if json.Unmarshal(t, &tool) == nil && tool != nil {
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

func sameObject(a, b object) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// checkScan compares the scanner with encoding/json on one input.
func checkScan(t *testing.T, in []byte) {
	t.Helper()
	if got, want := validJSON(in), json.Valid(in); got != want {
		t.Fatalf("validJSON(%q) = %v, json.Valid %v", in, got, want)
	}
	msgs, batch, ok := decode(in)
	wmsgs, wbatch, wok := decodeStd(in)
	if ok != wok || ok && (batch != wbatch || len(msgs) != len(wmsgs)) {
		t.Fatalf("decode(%q): ok %v batch %v %d messages; encoding/json: ok %v batch %v %d", in, ok, batch, len(msgs), wok, wbatch, len(wmsgs))
	}
	for i := range msgs {
		m, w := msgs[i], wmsgs[i]
		if !sameObject(m, w) {
			t.Fatalf("decode(%q) message %d: %q; encoding/json: %q", in, i, m, w)
		}
		if !sameObject(params(m), paramsStd(w)) {
			t.Fatalf("params of %q: %q; encoding/json: %q", in, params(m), paramsStd(w))
		}
		if got, want := outcome(m), outcomeStd(w); got != want {
			t.Fatalf("outcome of %q: %s; encoding/json: %s", in, got, want)
		}
		r := &Relay{Rules: func(name string) (uint32, bool) { return 1, strings.HasPrefix(name, "b") }}
		gm, gok := r.filterTools(m)
		wm, wok := r.filterToolsStd(w)
		gj, _ := json.Marshal(gm)
		wj, _ := json.Marshal(wm)
		if gok != wok || !bytes.Equal(gj, wj) {
			t.Fatalf("tools of %q filtered: %s %v; encoding/json: %s %v", in, gj, gok, wj, wok)
		}
	}
}

var scanSeeds = []string{
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2,{"b":"c\"}"}]}}}`,
	`  {"id":"7","result":{"content":[],"isError":true}}  `,
	`{"id":7,"result":{"isError":false,"ISERROR":true}}`,
	`{"id":7,"result":{"iserror":"yes"}}`,
	`{"id":7,"result":{"isError":null}}`,
	`{"id":7,"result":{"isError":true,"isError":false}}`,
	`{"id":7,"result":[true]}`,
	`{"id":7,"result":null}`,
	`{"id":7,"result":{"i\u0073Error":true}}`,
	`{"id":7,"result":{"\u017fsError":true}}`,
	`{"id":7,"error":{"code":-1}}`,
	`{"id":1,"result":{"tools":[{"name":"a"},{"name":"b","x":{}},3,null,{"name":7}]}}`,
	`{"id":1,"result":{"tools":null}}`,
	`{"id":1,"result":{"tools":{}}}`,
	`[{"id":1,"method":"tools/list"},{"id":2,"method":"tools/call","params":{"name":"y"}}]`,
	`[{"id":1},null]`, `[{"id":1},2]`, `[]`, `[ ]`, `[{}]`,
	`{"m\u0065thod":"tools/call","params":{"na\u006de":"x"}}`,
	`{"method":"tools/call","method":"ping"}`,
	`{"method":"tools/call","params":{"name":"a","name":"b"}}`,
	`{"method":"tools/call","params":"x"}`, `{"method":"tools/call","params":null}`,
	`{"method":"tools/call","params":{"name":"\ud800"}}`,
	"{\"method\":\"x\xff\xfe\",\"\xffk\":1}",
	`{"a":-0.5e+10,"b":1E5,"c":0,"d":-0,"e":12.0e-3,"f":true,"g":false,"h":null}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":+1}`, `{"a":0x1}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":falsey}`, `{"a":"\x"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}",
	"{\"a\":\"tab\there\"}", `{"a":"\/\b\f\n\r\t\\\""}`,
	`{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`, `{"a":[1,]}`, `{"a":[,1]}`,
	`{} {}`, `{}x`, `{`, `}`, `"str"`, `null`, `123`, ``, ` `, "\f{}", "{}\v", "\u00a0{}",
	"{\"a\":\n\t[ 1 , 2 ]\r\n}", `{"a":{"b":{"c":{"d":[[[[]]]]}}}}`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"x":"` + strings.Repeat(`\\`, 5) + `\""}`,
}

// TestJSONScanMatchesEncodingJSON: the relay's scanner accepts exactly
// what encoding/json accepts and reads the same members, params, outcome
// and tools as the relay's earlier encoding/json code, on inputs chosen
// at the edges (escapes in names, repeated names, case-folded isError,
// invalid numbers and literals, control characters, invalid UTF-8,
// non-JSON space, nesting at the limit).
func TestJSONScanMatchesEncodingJSON(t *testing.T) {
	for _, s := range scanSeeds {
		checkScan(t, []byte(s))
	}
}

// FuzzJSONScan: the same comparison on any input (`go test -fuzz
// FuzzJSONScan ./internal/mcp`).
func FuzzJSONScan(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkScan(t, in) })
}

// BenchmarkInspectLarge: the relay's reading of a tools/call with a
// 1 MiB argument and of its 1 MiB result.
func BenchmarkInspectLarge(b *testing.B) {
	payload := strings.Repeat("abcdefgh", 1<<17)
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + payload + `"}}}` + "\n")
	res := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + payload + `"}]}}` + "\n")
	r := &Relay{Tracker: NewTracker(), Rules: func(string) (uint32, bool) { return 0, false }}
	b.SetBytes(int64(len(req) + len(res)))
	for b.Loop() {
		r.inspectClient(req)
		r.inspectServer(res)
	}
}
