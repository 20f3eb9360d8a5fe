package events

import (
	"io"
	"testing"
)

// FuzzDecode: garbage, truncated and oversized records are counted as
// malformed or decoded; nothing panics, and every decoded event renders.
func FuzzDecode(f *testing.F) {
	f.Add(netRecord(KindConnect, VerdictBlocked, 40, AFInet, []byte{10, 0, 0, 5}, 22, false))
	f.Add(withUnspec(netRecord(KindSendmsg, VerdictBlocked, 41, AFInet6, make([]byte, 16), 53, true), UnspecMapped))
	f.Add(fileRecord(VerdictAudit, 7, 2050, 918273))
	f.Add(traceRecord(KindTraceExec, "sh", "/bin/sh"))
	f.Add([]byte{})
	f.Add([]byte{3, 1, 64, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewRenderer(io.Discard, Text, nil, 0)
		if err := r.Record(b); err != nil {
			t.Fatal(err)
		}
		j := NewRenderer(io.Discard, JSON, nil, 0)
		j.Record(b)
		if r.Received+r.Malformed != 1 {
			t.Fatalf("record neither received nor malformed")
		}
		if e, err := Decode(b); err == nil {
			checkJSON(t, j, e)
		}
	})
}
