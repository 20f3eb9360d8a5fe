package kernel

import (
	"sync"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"golang.org/x/sys/unix"

	"github.com/assaymcp/assay/internal/testenv"
)

func TestMain(m *testing.M) { assaytest.Main(m) }

// TestRateBudgets: the per-cgroup budget map is bounded (4 entries here)
// and sweeping cleans it, step by step, with real cgroups, real connects
// and the kernel's own map:
//   - four new cgroups each get a budget of their own (4 entries);
//   - a fifth, with the map full, gets none: its event is not emitted
//     (under another cgroup's budget or otherwise) but counted as
//     suppressed and aggregated under its own cgroup, rule and destination;
//   - SweepRate deletes the budgets of seconds that are over;
//   - then new cgroups get budgets of their own again.
func TestRateBudgets(t *testing.T) {
	testenv.Privileged(t)
	scope := assaytest.NewCgroup(t)
	inst, err := Load(Config{
		Rules:  Rules{DenyPorts: map[uint16]uint32{9: 90}},
		Scopes: []Scope{{Path: scope.Path, ID: scope.ID, Level: scope.Level}}, RateLimit: 1, RateEntries: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var mu sync.Mutex
	emitted := map[uint64]int{}
	stream, err := inst.Stream(func(rec []byte, _ bool) {
		e, err := events.Decode(rec)
		if err != nil {
			t.Errorf("record: %v", err)
			return
		}
		mu.Lock()
		emitted[e.CgroupID]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Stop()
	if err := inst.Attach(); err != nil {
		t.Fatal(err)
	}

	// attempt makes one denied connect from a new cgroup and returns how
	// it was reported: emitted, or the aggregates (read after the barrier
	// DrainAggregates is, so the program has finished either way).
	attempt := func() (id uint64, wasEmitted bool, aggs []Aggregate) {
		c, err := cgroup.CreateLeaf(scope.Path, "rate")
		if err != nil {
			t.Fatal(err)
		}
		r := assaytest.Probe(t, &c, "connect", "tcp4", "127.0.0.1:9")
		if r.Errno != "EPERM" {
			t.Fatalf("connect from %s: errno %q, want EPERM", c.Path, r.Errno)
		}
		if err := cgroup.Remove(c); err != nil {
			t.Fatal(err)
		}
		aggs, err = inst.DrainAggregates()
		if err != nil {
			t.Fatal(err)
		}
		if len(aggs) > 0 {
			return c.ID, false, aggs
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := emitted[c.ID]
			mu.Unlock()
			if n > 0 {
				return c.ID, true, nil
			}
			if time.Now().After(deadline) {
				t.Fatalf("cgroup %d: neither emitted nor aggregated", c.ID)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	for i := range 4 {
		if _, ok, aggs := attempt(); !ok {
			t.Fatalf("cgroup %d of 4 got no budget of its own (aggregates %+v)", i+1, aggs)
		}
	}
	id, ok, aggs := attempt()
	if ok {
		t.Fatalf("a fifth cgroup's event was emitted with the 4-entry budget map full")
	}
	if len(aggs) != 1 || aggs[0].CgroupID != id || aggs[0].RuleID != 90 || aggs[0].Port != 9 || aggs[0].Suppressed != 1 || aggs[0].Dropped != 0 {
		t.Errorf("aggregates %+v, want cgroup %d's one suppressed connect to port 9 under rule 90", aggs, id)
	}
	c, err := inst.Counters()
	if err != nil || c.Suppressed[PathSocket] != 1 || c.Emitted[PathSocket] != 4 {
		t.Errorf("counters %+v, %v: want 4 emitted, 1 suppressed", c, err)
	}

	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	// As if two seconds later: every budget so far is for a second over.
	n, err := inst.SweepRate(uint64(ts.Sec) + 2)
	if err != nil || n != 4 {
		t.Fatalf("SweepRate deleted %d budgets (%v), want the 4", n, err)
	}
	for i := range 2 {
		if _, ok, aggs := attempt(); !ok {
			t.Errorf("after the sweep, new cgroup %d got no budget of its own (aggregates %+v)", i+1, aggs)
		}
	}
}
