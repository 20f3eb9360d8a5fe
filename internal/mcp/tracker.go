package mcp

import (
	"sort"
	"sync"

	"github.com/assaymcp/assay/internal/events"
	"golang.org/x/sys/unix"
)

// MaxHistory is how many answered requests a Tracker remembers, so that
// kernel events rendered a while after they happened (a backlog in the ring
// buffer) still find the requests that were in flight then.
const MaxHistory = 1 << 16

// call is one request: in flight from start until end (0: still in flight),
// both CLOCK_MONOTONIC nanoseconds, the clock of the kernel's event
// timestamps (bpf_ktime_get_ns).
type call struct {
	events.MCPCall
	key        string
	start, end uint64
}

// Tracker follows the requests in flight between the client and the server:
// Begin is called just before a request is written to the server, End just
// after its response was read from it. At(t) is then every request in
// flight at kernel time t: whatever the server did between being sent a
// request and answering it happened at a time inside that window. It is
// safe for concurrent use.
type Tracker struct {
	mu       sync.Mutex
	inflight []*call // oldest first
	done     []*call // answered, in order of end
	now      func() uint64
}

// NewTracker returns an empty tracker on CLOCK_MONOTONIC.
func NewTracker() *Tracker { return &Tracker{now: Monotonic} }

// Monotonic is CLOCK_MONOTONIC in nanoseconds: the clock of
// bpf_ktime_get_ns, so comparable with kernel event timestamps.
func Monotonic() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Begin records that request c (key: its canonical id, see idKey) is about
// to be sent to the server.
func (t *Tracker) Begin(c events.MCPCall, key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inflight = append(t.inflight, &call{MCPCall: c, key: key, start: t.now()})
}

// End records that the response to the request with this canonical id was
// read from the server (or that the client cancelled it), and reports
// whether such a request was in flight. With several in flight under one
// id (a client error), the oldest is ended.
func (t *Tracker) End(key string) (events.MCPCall, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, c := range t.inflight {
		if c.key != key {
			continue
		}
		c.end = t.now()
		t.inflight = append(t.inflight[:i:i], t.inflight[i+1:]...)
		t.done = append(t.done, c)
		if len(t.done) > MaxHistory {
			t.done = append(t.done[:0:0], t.done[len(t.done)-MaxHistory/2:]...)
		}
		return c.MCPCall, true
	}
	return events.MCPCall{}, false
}

// InFlight is the number of requests in flight now.
func (t *Tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.inflight)
}

// At returns the requests in flight at kernel time mono, oldest first, or
// nil when there were none.
func (t *Tracker) At(mono uint64) []events.MCPCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*call
	// done is in order of end: skip those that ended before mono.
	i := sort.Search(len(t.done), func(i int) bool { return t.done[i].end >= mono })
	for _, c := range t.done[i:] {
		if c.start <= mono {
			out = append(out, c)
		}
	}
	for _, c := range t.inflight {
		if c.start <= mono {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].start < out[b].start })
	calls := make([]events.MCPCall, len(out))
	for i, c := range out {
		calls[i] = c.MCPCall
	}
	return calls
}
