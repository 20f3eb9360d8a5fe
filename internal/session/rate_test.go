package session_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
)

func TestMain(m *testing.M) { assaytest.Main(m) }

// lockedBuffer is the session's output, read while it writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// seen returns, per cgroup id, the events printed one by one and the
// events counted in aggregate lines so far.
func (l *lockedBuffer) seen(t *testing.T) (single, aggregated map[uint64]uint64) {
	l.mu.Lock()
	text := l.b.String()
	l.mu.Unlock()
	single, aggregated = map[uint64]uint64{}, map[uint64]uint64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		var a events.JSONAggregate
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		switch a.Type {
		case "event":
			single[a.CgroupID]++
		case "aggregate":
			aggregated[a.CgroupID] += a.Count
		}
	}
	return single, aggregated
}

// TestRateBudgetsUnderCgroupChurn: the per-cgroup budget map is bounded
// (4 entries here) and cleaned. Cgroups come and go under one scope, each
// making one denied connect, with a limit of one event per second:
//   - while the map is full, a new cgroup's event is not emitted under
//     another's budget, nor lost: it is counted in an aggregate;
//   - the session sweeps the budgets of seconds that are over, so a new
//     cgroup soon gets a budget of its own again (kernel.TestRateBudgets
//     checks the map itself, step by step);
//   - every attempt of every cgroup reaches the operator exactly once.
func TestRateBudgetsUnderCgroupChurn(t *testing.T) {
	assaytest.Privileged(t)
	scope := assaytest.NewCgroup(t)
	p, err := policy.Parse("churn.yaml", []byte("version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 90}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	s, err := session.Start(session.Options{
		Policy: p, Scopes: []cgroup.Scope{scope}, RateLimit: 1, RateEntries: 4,
		AggInterval: 50 * time.Millisecond, Out: out, Format: events.JSON,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	var children []uint64
	attempt := func() uint64 {
		c, err := cgroup.CreateLeaf(scope.Path, "churn")
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
		children = append(children, c.ID)
		return c.ID
	}
	// reported waits until id's attempt shows, and says whether it was
	// emitted one by one.
	reported := func(id uint64) bool {
		deadline := time.Now().Add(10 * time.Second)
		for {
			single, agg := out.seen(t)
			if single[id]+agg[id] > 0 {
				return single[id] > 0
			}
			if time.Now().After(deadline) {
				t.Fatalf("cgroup %d's attempt never reported", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Fill the map and beyond.
	full := 0
	for range 8 {
		if !reported(attempt()) {
			full++
		}
	}
	t.Logf("8 cgroups in quick succession: %d not emitted one by one (the map holds 4)", full)
	// The session sweeps the budgets of past seconds: a new cgroup soon
	// gets a budget of its own again.
	deadline := time.Now().Add(20 * time.Second)
	for !reported(attempt()) {
		if time.Now().After(deadline) {
			t.Fatal("no new cgroup got a budget of its own within 20s: the budgets of past seconds are not swept")
		}
	}

	if _, err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	single, agg := out.seen(t)
	for _, id := range children {
		if single[id]+agg[id] != 1 {
			t.Errorf("cgroup %d: %d events + %d aggregated, want its one attempt", id, single[id], agg[id])
		}
	}
	if full == 0 {
		t.Logf("the map never filled (the sweep kept up)")
	}
}
