package events

import (
	"encoding/json"
	"io"
	"net/netip"
	"testing"
)

var benchEvent = Event{Kind: KindConnect, Verdict: VerdictBlocked, RuleID: 40, PID: 4242, TID: 4242, CgroupID: 4026532987,
	MonoNS: 1e9, Comm: "curl", Family: AFInet, Protocol: 6, Port: 22, Addr: netip.MustParseAddr("10.0.0.5")}

// BenchmarkJSONEvent is the hand-written encoder; BenchmarkJSONReflect the
// encoding/json baseline it replaced, measured in the same run.
func BenchmarkJSONEvent(b *testing.B) {
	r := NewRenderer(io.Discard, JSON, nil, 0)
	b.ReportAllocs()
	for b.Loop() {
		r.Event(benchEvent)
	}
}

func BenchmarkJSONReflect(b *testing.B) {
	r := NewRenderer(io.Discard, JSON, nil, 0)
	b.ReportAllocs()
	for b.Loop() {
		out, _ := json.Marshal(r.ToJSON(benchEvent))
		r.w.Write(append(out, '\n'))
	}
}

func BenchmarkText(b *testing.B) {
	r := NewRenderer(io.Discard, Text, nil, 0)
	b.ReportAllocs()
	for b.Loop() {
		r.Event(benchEvent)
	}
}
