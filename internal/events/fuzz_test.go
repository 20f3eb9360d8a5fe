package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode"
)

// FuzzDecode: garbage, truncated and oversized records are counted as
// malformed or decoded; nothing panics, and every decoded event renders.
// The security property: whatever the bytes (a hostile process chooses its
// comm and paths), a record renders as at most one line, with no control
// character in it, and in JSON as one valid JSON object.
func FuzzDecode(f *testing.F) {
	f.Add(netRecord(KindConnect, VerdictBlocked, 40, AFInet, []byte{10, 0, 0, 5}, 22, false))
	f.Add(withUnspec(netRecord(KindSendmsg, VerdictBlocked, 41, AFInet6, make([]byte, 16), 53, true), UnspecMapped))
	f.Add(fileRecord(VerdictAudit, 7, 2050, 918273))
	f.Add(traceRecord(KindTraceExec, "sh", "/bin/sh"))
	f.Add(traceRecord(KindTraceOpen, "a\nb\x1b[2J", "/tmp/\r\x00\u2028x"))
	f.Add(fileOpRecord(OpRename, true, SourceDirArg, "/w/\x1b[2Jb"))
	f.Add([]byte{})
	f.Add([]byte{3, 1, 64, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var text, js bytes.Buffer
		r := NewRenderer(&text, Text, nil, 0)
		if err := r.Record(b); err != nil {
			t.Fatal(err)
		}
		j := NewRenderer(&js, JSON, nil, 0)
		j.Record(b)
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := j.Flush(); err != nil {
			t.Fatal(err)
		}
		if r.Received+r.Malformed != 1 {
			t.Fatalf("record neither received nor malformed")
		}
		for name, out := range map[string][]byte{"text": text.Bytes(), "json": js.Bytes()} {
			if len(out) == 0 {
				continue
			}
			line, ok := bytes.CutSuffix(out, []byte("\n"))
			if !ok || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("%s: not one line: %q", name, out)
			}
			for _, c := range string(line) {
				if unicode.IsControl(c) || c == '\u2028' || c == '\u2029' {
					t.Fatalf("%s: control character %U in %q", name, c, line)
				}
			}
			if name == "json" && !json.Valid(line) {
				t.Fatalf("json: invalid JSON %q", line)
			}
		}
		if e, err := Decode(b); err == nil {
			if r.Received != 1 || text.Len() == 0 || js.Len() == 0 {
				t.Fatalf("decoded record rendered nothing (text %q, json %q)", text.Bytes(), js.Bytes())
			}
			checkJSON(t, j, e)
		}
	})
}
