package e2e_test

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
)

// Ports nothing listens on: denied ones need no listener, and in audit mode
// the connects are refused by the closed port.
const (
	floodPort = 9  // discard
	otherPort = 13 // daytime
	floodRule = 80
	otherRule = 81
)

func floodPolicy(t *testing.T) string {
	return writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: %d}, {port: %d, id: %d}]\n",
		floodPort, floodRule, otherPort, otherRule)
}

// seen is how often the operator learned of attempts to port (rule): the
// events printed one by one plus the counts of the aggregate lines.
func seen(res assaytest.Result, port uint16, rule uint32) (events, aggregated uint64) {
	for _, e := range res.Events {
		if e.DstPort == port && e.RuleID == rule {
			events++
		}
	}
	for _, a := range res.Aggregates {
		if a.DstPort == port && a.RuleID == rule {
			aggregated += a.Count
		}
	}
	return events, aggregated
}

func ruleCounts(s events.Summary, rule uint32) events.RuleCounts {
	for _, r := range s.Rules {
		if r.RuleID == rule {
			return r
		}
	}
	return events.RuleCounts{RuleID: rule}
}

// checkFloodEvidence checks that the operator saw every attempt once,
// one by one or counted in an aggregate, and that the summary's per-rule
// counts are the aggregates'.
func checkFloodEvidence(t *testing.T, res assaytest.Result, verdict string, flood, other uint64) {
	t.Helper()
	if res.ExitCode != 0 || !res.HasSummary {
		t.Fatalf("assay exited %d, summary %v; stderr:\n%s", res.ExitCode, res.HasSummary, res.StderrText())
	}
	for _, e := range res.Events {
		if e.Verdict != verdict {
			t.Fatalf("event with verdict %q, want %q: %+v", e.Verdict, verdict, e)
		}
	}
	for _, a := range res.Aggregates {
		if a.Verdict != verdict || a.Kind != "connect" || a.DstAddr != "127.0.0.1" || a.TargetUnrecorded {
			t.Errorf("unexpected aggregate %+v", a)
		}
		if a.Count != a.Suppressed+a.Dropped || a.Count == 0 || a.FirstTime == "" || a.LastTime < a.FirstTime {
			t.Errorf("inconsistent aggregate %+v", a)
		}
	}
	for _, c := range []struct {
		port uint16
		rule uint32
		n    uint64
	}{{floodPort, floodRule, flood}, {otherPort, otherRule, other}} {
		ev, agg := seen(res, c.port, c.rule)
		t.Logf("port %d: %d attempts, %d events, %d in aggregates", c.port, c.n, ev, agg)
		if ev+agg != c.n {
			t.Errorf("port %d: the operator saw %d events + %d aggregated, want exactly the %d attempts", c.port, ev, agg, c.n)
		}
		if rc := ruleCounts(res.Summary, c.rule); rc.Suppressed+rc.Dropped != agg {
			t.Errorf("summary rule %d: suppressed=%d dropped=%d, want %d in all (the aggregates')", c.rule, rc.Suppressed, rc.Dropped, agg)
		}
	}
	s := res.Summary.Socket
	if s.Emitted != uint64(len(res.Events)) || s.Emitted+s.Suppressed+s.Dropped != flood+other || res.Summary.Unaggregated != 0 {
		t.Errorf("summary socket emitted=%d suppressed=%d dropped=%d unaggregated=%d; %d events, %d attempts",
			s.Emitted, s.Suppressed, s.Dropped, res.Summary.Unaggregated, len(res.Events), flood+other)
	}
}

// TestFloodCannotHideRateLimited: a flood of denied connects to one port
// makes the rate limit (1 event per second per cgroup here) suppress
// almost all of them; one attempt to another denied port right after is
// still reported — as an event or, when suppressed too, in an aggregate
// with its count — and so is every suppressed attempt of the flood, with
// the per-rule counts in the summary. In enforce and audit mode.
func TestFloodCannotHideRateLimited(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	for _, mode := range []struct{ name, verdict, errno string }{{"enforce", "blocked", "EPERM"}, {"audit", "audit", "ECONNREFUSED"}} {
		t.Run(mode.name, func(t *testing.T) {
			const attempts = 300
			cg := assaytest.NewCgroup(t)
			args := []string{"--output", "json", "--rate-limit", "1"}
			if mode.name == "audit" {
				args = append(args, "--audit")
			}
			m := monitor(t, floodPolicy(t), cg, args...)
			r := assaytest.Probe(t, &cg, "connect-loop", fmt.Sprint(attempts), "tcp4", hostPort("127.0.0.1", floodPort))
			if r.Attempts != attempts || (mode.errno == "EPERM" && r.N != attempts) {
				t.Fatalf("flood: %d attempts, %d EPERM, %d other (last %q)", r.Attempts, r.N, r.Other, r.Err)
			}
			o := assaytest.Probe(t, &cg, "connect", "tcp4", hostPort("127.0.0.1", otherPort))
			if o.Errno != mode.errno {
				t.Fatalf("the other attempt: errno %q, want %s", o.Errno, mode.errno)
			}
			res := m.Stop()
			checkFloodEvidence(t, res, mode.verdict, attempts, 1)
			if len(res.Aggregates) == 0 {
				t.Errorf("no aggregate although the rate limit suppressed events")
			}
			for _, a := range res.Aggregates {
				if a.DstPort == otherPort && (a.PID != uint32(o.PID) || a.Comm != o.Comm || a.CgroupID != cg.ID) {
					t.Errorf("the other attempt's aggregate names pid %d comm %q cgroup %d, want %d %q %d", a.PID, a.Comm, a.CgroupID, o.PID, o.Comm, cg.ID)
				}
			}
		})
	}
}

// TestFloodCannotHideRingFull: with the reader stopped and a one-page ring
// buffer, a flood fills the ring and every further event is dropped; one
// attempt to another denied port then is certainly dropped too. Once the
// reader runs again, the operator gets that attempt in an aggregate
// (dropped=1) and every dropped attempt of the flood counted.
func TestFloodCannotHideRingFull(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	const attempts = 2000
	cg := assaytest.NewCgroup(t)
	m := monitor(t, floodPolicy(t), cg, "--output", "json", "--ring-size", "4096", "--rate-limit", "0")
	m.Signal(syscall.SIGSTOP)
	waitStopped(t, m.Pid())
	r := assaytest.Probe(t, &cg, "connect-loop", fmt.Sprint(attempts), "tcp4", hostPort("127.0.0.1", floodPort))
	o := assaytest.Probe(t, &cg, "connect", "tcp4", hostPort("127.0.0.1", otherPort))
	m.Signal(syscall.SIGCONT)
	if r.N != attempts {
		t.Fatalf("flood: %d attempts, %d EPERM, %d other (last %q)", r.Attempts, r.N, r.Other, r.Err)
	}
	requireEPERM(t, "the other attempt", o)
	res := m.Stop()
	checkFloodEvidence(t, res, "blocked", attempts, 1)
	var other []events.JSONAggregate
	for _, a := range res.Aggregates {
		if a.DstPort == otherPort {
			other = append(other, a)
		}
	}
	if len(other) != 1 || other[0].Dropped != 1 || other[0].Suppressed != 0 || other[0].PID != uint32(o.PID) {
		t.Errorf("aggregates of the other attempt: %+v, want one with dropped=1 from pid %d", other, o.PID)
	}
	if res.Summary.Socket.Dropped == 0 {
		t.Errorf("nothing dropped with a one-page ring and a stopped reader")
	}
}
