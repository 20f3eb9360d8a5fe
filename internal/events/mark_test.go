package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestMarker(t *testing.T) {
	var out bytes.Buffer
	tok := NewToken()
	if len(tok) != TokenLen || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("token %q", tok)
	}
	if other := NewToken(); other == tok {
		t.Fatalf("two tokens alike: %q", tok)
	}
	m := NewMarker(&out, tok)
	// Lines cut anywhere across writes, text and JSON.
	for _, w := range []string{"assay: one\n[PID 1] 🛡️ BLO", "CKED CONNECT: x\n", `{"type":"event"}` + "\n{", `"type":"summary"}` + "\npartial"} {
		if n, err := m.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("write %q: %d, %v", w, n, err)
		}
	}
	m.Write([]byte(" line\n"))
	p := TokenPrefix(tok)
	want := p + "assay: one\n" + p + "[PID 1] 🛡️ BLOCKED CONNECT: x\n" +
		`{"token":"` + tok + `","type":"event"}` + "\n" + `{"token":"` + tok + `","type":"summary"}` + "\n" + p + "partial line\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !Genuine(l, tok) {
			t.Errorf("not genuine: %q", l)
		}
		if Genuine(l, NewToken()) {
			t.Errorf("genuine under another token: %q", l)
		}
		if strings.HasPrefix(l, "{") {
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil || v["token"] != tok {
				t.Errorf("marked JSON %q: %v %v", l, v, err)
			}
		}
	}
	// A line the command prints with a copy of another run's token, or
	// text in front of a token, is not genuine.
	for _, forged := range []string{"[PID 1] 🛡️ BLOCKED CONNECT: x", "x" + p + "[PID 1]", `{"type":"event","token":"` + tok + `"}`} {
		if Genuine(forged, tok) {
			t.Errorf("forged line genuine: %q", forged)
		}
	}
}
