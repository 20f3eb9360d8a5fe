package events

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
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
	// Rules: per rule, the events not emitted one by one (suppressed or
	// dropped), as the aggregate lines reported them.
	Rules []RuleCounts `json:"rules,omitempty"`
	// Unaggregated counts suppressed or dropped events the kernel could not
	// aggregate either (its tables were full): no line names them.
	Unaggregated uint64 `json:"unaggregated,omitempty"`
}

// Pressure reports whether any event was lost to a full ring buffer.
func (s Summary) Pressure() bool {
	return s.Tracepoint.Dropped+s.LSM.Dropped+s.Socket.Dropped > 0
}

// PressureWarning is the line printed when events were dropped.
const PressureWarning = "⚠️ Ring buffer pressure detected"

// WriteText writes the exit summary for operators, one line per path:
//
//	Socket ringbuf: emitted=N dropped=N [suppressed=N]
//
// suppressed (events not emitted because their cgroup was over its
// --rate-limit budget) is written only when non-zero, so that the line is
// unchanged for every run the rate limit did not touch; "emitted=N
// dropped=N" is always its prefix.
func (s Summary) WriteText(w io.Writer) error {
	for _, p := range []struct {
		name string
		c    PathCounts
	}{{"Tracepoint", s.Tracepoint}, {"LSM", s.LSM}, {"Socket", s.Socket}} {
		line := fmt.Sprintf("%s ringbuf: emitted=%d dropped=%d", p.name, p.c.Emitted, p.c.Dropped)
		if p.c.Suppressed > 0 {
			line += fmt.Sprintf(" suppressed=%d", p.c.Suppressed)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	for _, r := range s.Rules {
		if _, err := fmt.Fprintf(w, "Rule %d: suppressed=%d dropped=%d (see its [AGGREGATE] lines)\n", r.RuleID, r.Suppressed, r.Dropped); err != nil {
			return err
		}
	}
	if s.Unaggregated > 0 {
		fmt.Fprintf(w, "Unaggregated: %d events suppressed or dropped while the aggregation tables were full\n", s.Unaggregated)
	}
	var err error
	if s.Malformed > 0 {
		fmt.Fprintf(w, "Malformed records: %d\n", s.Malformed)
	}
	if s.Pressure() {
		_, err = fmt.Fprintln(w, PressureWarning+": events were lost; raise --ring-size or narrow the scope")
	}
	return err
}

type jsonSummary struct {
	Schema    int                   `json:"schema"`
	Type      string                `json:"type"` // "summary"
	Time      string                `json:"time"`
	Paths     map[string]PathCounts `json:"paths"`
	Received  uint64                `json:"received"`
	Malformed uint64                `json:"malformed"`
	Pressure  bool                  `json:"ring_buffer_pressure"`
	Rules     []RuleCounts          `json:"rules,omitempty"`
	Unagg     uint64                `json:"unaggregated,omitempty"`
}

// WriteJSON writes the exit summary as one JSON object line.
func (s Summary) WriteJSON(w io.Writer) error {
	out, _ := json.Marshal(jsonSummary{
		Schema:    SchemaVersion,
		Type:      "summary",
		Time:      time.Now().UTC().Format(JSONTime),
		Paths:     map[string]PathCounts{"tracepoint": s.Tracepoint, "lsm": s.LSM, "socket": s.Socket},
		Received:  s.Received,
		Malformed: s.Malformed,
		Pressure:  s.Pressure(),
		Rules:     s.Rules,
		Unagg:     s.Unaggregated,
	})
	_, err := w.Write(append(out, '\n'))
	return err
}
