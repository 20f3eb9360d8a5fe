package bench_test

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/events"
)

// BenchmarkRender is the user-space hot path of figure 4 on its own: one
// socket event rendered as text and as JSON to io.Discard, timed over
// rounds of 200k events whatever -benchtime says, with the allocations
// per event.
func BenchmarkRender(b *testing.B) {
	e := events.Event{Kind: events.KindSendmsg, Verdict: events.VerdictBlocked, RuleID: 1, PID: 4242, TID: 4243, CgroupID: 65879,
		MonoNS: 123456789, Comm: "bench.test", Family: events.AFInet, Protocol: 17, Port: 9, Addr: netip.MustParseAddr("127.0.0.1")}
	const n = 200000
	for _, f := range []struct {
		name   string
		format events.Format
	}{{"text", events.Text}, {"JSON", events.JSON}} {
		r := events.NewRenderer(io.Discard, f.format, nil, 1_000_000)
		var raw []float64
		var allocs float64
		for round := 0; round < rounds(); round++ {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			t := time.Now()
			for i := 0; i < n; i++ {
				if err := r.Event(e); err != nil {
					b.Fatal(err)
				}
			}
			raw = append(raw, float64(time.Since(t).Nanoseconds())/n)
			runtime.ReadMemStats(&m1)
			allocs = float64(m1.Mallocs-m0.Mallocs) / n
		}
		record(b, report.Row{Figure: "4 pipeline", Case: "render one socket event, " + f.name, Variant: "events.Renderer.Event, in process",
			Unit: "ns/event", Value: report.Median(raw), Raw: raw,
			Note: fmt.Sprintf("%.1f allocations per event; the user-space rendering cost alone", allocs)})
	}
}
