package schema

import (
	"bytes"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/events"
)

// TestTokenValidates: the lines of `assay run`, marked with the run's
// token (events.Marker), follow the schema; a malformed token does not.
func TestTokenValidates(t *testing.T) {
	var out bytes.Buffer
	m := events.NewMarker(&out, events.NewToken())
	m.Write([]byte(`{"schema":1,"type":"message","time":"2026-11-29T18:44:11.623158708Z","message":"x"}` + "\n"))
	m.Write([]byte(`{"schema":1,"type":"event","time":"2026-11-29T18:44:11.623158708Z","kind":"connect","verdict":"blocked","rule_id":9,"pid":1,"tid":1,"comm":"x","cgroup_id":1,"family":"inet","protocol":"tcp","dst_addr":"127.0.0.1","dst_port":9}` + "\n"))
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if err := Validate([]byte(l)); err != nil {
			t.Errorf("%s: %v", l, err)
		}
	}
	if err := Validate([]byte(`{"token":"NOT-A-TOKEN","schema":1,"type":"message","time":"2026-11-29T18:44:11.623158708Z","message":"x"}`)); err == nil {
		t.Error("a malformed token validates")
	}
}
