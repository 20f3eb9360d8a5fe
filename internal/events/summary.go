package events

import (
	"encoding/json"
	"fmt"
	"io"
)

// PathCounts are one event path's counters.
type PathCounts struct {
	Emitted    uint64 `json:"emitted"`
	Dropped    uint64 `json:"dropped"`
	Suppressed uint64 `json:"suppressed"`
}

// Summary is what the monitor reports at exit.
type Summary struct {
	Tracepoint PathCounts `json:"tracepoint"`
	LSM        PathCounts `json:"lsm"`
	Socket     PathCounts `json:"socket"`
	Received   uint64     `json:"received"`  // records read from the ring buffers
	Malformed  uint64     `json:"malformed"` // records that could not be decoded
}

// Pressure reports whether any event was lost to a full ring buffer.
func (s Summary) Pressure() bool {
	return s.Tracepoint.Dropped+s.LSM.Dropped+s.Socket.Dropped > 0
}

// PressureWarning is the line printed when events were dropped.
const PressureWarning = "⚠️ Ring buffer pressure detected"

// WriteText writes the exit summary for operators.
func (s Summary) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "Tracepoint ringbuf: emitted=%d dropped=%d\nLSM ringbuf: emitted=%d dropped=%d\nSocket ringbuf: emitted=%d dropped=%d\n",
		s.Tracepoint.Emitted, s.Tracepoint.Dropped, s.LSM.Emitted, s.LSM.Dropped, s.Socket.Emitted, s.Socket.Dropped)
	if err != nil {
		return err
	}
	if s.Malformed > 0 {
		fmt.Fprintf(w, "Malformed records: %d\n", s.Malformed)
	}
	if s.Pressure() {
		_, err = fmt.Fprintln(w, PressureWarning+": events were lost; raise --ring-size or narrow the scope")
	}
	return err
}

type jsonSummary struct {
	Type      string                `json:"type"` // "summary"
	Paths     map[string]PathCounts `json:"paths"`
	Received  uint64                `json:"received"`
	Malformed uint64                `json:"malformed"`
	Pressure  bool                  `json:"ring_buffer_pressure"`
}

// WriteJSON writes the exit summary as one JSON object line.
func (s Summary) WriteJSON(w io.Writer) error {
	out, _ := json.Marshal(jsonSummary{
		Type:      "summary",
		Paths:     map[string]PathCounts{"tracepoint": s.Tracepoint, "lsm": s.LSM, "socket": s.Socket},
		Received:  s.Received,
		Malformed: s.Malformed,
		Pressure:  s.Pressure(),
	})
	_, err := w.Write(append(out, '\n'))
	return err
}
