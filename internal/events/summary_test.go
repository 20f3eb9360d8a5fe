package events

import (
	"bytes"
	"testing"
)

// TestSummarySuppressed: the text summary names the events suppressed by
// the rate limit on the line of their path, after the unchanged
// "emitted=N dropped=N", and only when there were some.
func TestSummarySuppressed(t *testing.T) {
	var b bytes.Buffer
	s := Summary{Socket: PathCounts{Emitted: 50000, Dropped: 1, Suppressed: 950000}, LSM: PathCounts{Emitted: 2}}
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "Tracepoint ringbuf: emitted=0 dropped=0\nLSM ringbuf: emitted=2 dropped=0\nSocket ringbuf: emitted=50000 dropped=1 suppressed=950000\n" + PressureWarning
	if got := b.String(); len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("got %q\nwant prefix %q", got, want)
	}
	b.Reset()
	Summary{Tracepoint: PathCounts{Suppressed: 7}}.WriteText(&b)
	if want := "Tracepoint ringbuf: emitted=0 dropped=0 suppressed=7\nLSM ringbuf: emitted=0 dropped=0\nSocket ringbuf: emitted=0 dropped=0\n"; b.String() != want {
		t.Errorf("got %q\nwant %q", b.String(), want)
	}
}
