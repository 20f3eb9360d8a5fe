package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/assaymcp/assay/internal/events"
)

// TestListenAddr: a bare port or :PORT listens on loopback only; a host
// given explicitly is used.
func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"9464": "127.0.0.1:9464", ":9464": "127.0.0.1:9464", ":0": "127.0.0.1:0",
		"0.0.0.0:9464": "0.0.0.0:9464", "[::]:9464": "[::]:9464", "[::1]:1": "[::1]:1", "localhost:9": "localhost:9",
	} {
		if got, err := ListenAddr(in); err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "1.2.3.4", ":http", ":70000", "host:-1"} {
		if got, err := ListenAddr(bad); err == nil {
			t.Errorf("ListenAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// TestCounts: events by path and action, rule hits for decisions only,
// tool calls with a bounded tool label, the policy info replaced on each
// policy.
func TestCounts(t *testing.T) {
	m := New()
	m.Event(events.Event{Kind: events.KindConnect, Verdict: events.VerdictBlocked, RuleID: 40})
	m.Event(events.Event{Kind: events.KindFile, Verdict: events.VerdictAudit, RuleID: 7})
	m.Event(events.Event{Kind: events.KindTraceOpen, Verdict: events.VerdictObserved})
	m.Event(events.Event{Kind: events.KindTool, Verdict: events.VerdictBlocked, RuleID: 61})
	if got := testutil.ToFloat64(m.events.WithLabelValues("socket", "blocked")); got != 1 {
		t.Errorf("socket blocked %v", got)
	}
	for p, a := range map[string]string{"file": "audit", "tracepoint": "observed", "mcp": "blocked"} {
		if got := testutil.ToFloat64(m.events.WithLabelValues(p, a)); got != 1 {
			t.Errorf("%s %s: %v", p, a, got)
		}
	}
	if n := testutil.CollectAndCount(m.ruleHits); n != 3 {
		t.Errorf("%d rule hit series, want 3 (the observation has no rule)", n)
	}
	for i := range MaxTools + 5 {
		m.ToolCall("t"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i/26), "ok")
	}
	if n := testutil.CollectAndCount(m.toolCalls); n != MaxTools+1 {
		t.Errorf("%d tool series, want %d and _other", n, MaxTools)
	}
	m.Policy(1, "enforce")
	m.Policy(2, "audit")
	if n := testutil.CollectAndCount(m.info); n != 1 || testutil.ToFloat64(m.info.WithLabelValues("2", "audit", "2")) != 1 {
		t.Errorf("policy info: %d series", n)
	}
	m.SetRing(func() (Ring, error) { return Ring{Emitted: [3]uint64{1, 2, 3}, Suppressed: [3]uint64{0, 0, 9}}, nil })
	if n := testutil.CollectAndCount((*ringCollector)(m)); n != 9 {
		t.Errorf("%d ring series, want 9", n)
	}
	var nilM *Metrics
	nilM.Event(events.Event{})
	nilM.ToolCall("x", "ok")
	nilM.Reload(true)
}

// TestDashboard: the Grafana dashboard in docs/ is valid JSON and every
// assay_* metric it queries exists.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	m := New()
	m.Policy(1, "enforce")
	m.ToolCall("x", "ok")
	m.Event(events.Event{Kind: events.KindConnect, Verdict: events.VerdictBlocked, RuleID: 1})
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	re := regexp.MustCompile(`\b(assay_[a-z_]+|process_[a-z_]+|go_[a-z_]+)\b`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				n++
				if !known[name] {
					t.Errorf("the dashboard queries %s, which assay does not export", name)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d metric references in the dashboard", n)
	}
}
