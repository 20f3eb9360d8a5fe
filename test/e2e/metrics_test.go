package e2e_test

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestMetrics: `assay monitor --metrics :0` serves Prometheus metrics on
// loopback; after a known sequence - three denied connects, a reload, a
// refused reload, one more denied connect - a scrape over HTTP gives exact
// counts for events, rule hits, the ring buffer, reloads and the policy in
// force, plus the Go and process collectors.
func TestMetrics(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	addr := l.Addr.String()
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 40}]\n", l.Port())
	m := monitor(t, pol, cg, "--metrics", ":0")
	url := assaytest.MetricsURL(m.WaitStderr("assay: metrics at ", 1, eventTimeout))
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("metrics at %q, want loopback for a bare :PORT", url)
	}
	for range 3 {
		requireEPERM(t, "connect", assaytest.Probe(t, &cg, "connect", "tcp4", addr))
	}
	m.WaitEvents(3, eventTimeout)
	got := assaytest.ScrapeUntilSeries(t, url, map[string]float64{
		`assay_events_total{action="blocked",path="socket"}`:           3,
		`assay_rule_hits_total{rule_id="40"}`:                          3,
		`assay_ringbuf_events_total{outcome="emitted",path="socket"}`:  3,
		`assay_ringbuf_events_total{outcome="dropped",path="socket"}`:  0,
		`assay_ringbuf_events_total{outcome="emitted",path="lsm"}`:     0,
		`assay_policy_reloads_total{result="ok"}`:                      0,
		`assay_policy_reloads_total{result="refused"}`:                 0,
		`assay_policy_info{generation="1",mode="enforce",version="1"}`: 1,
	}, eventTimeout)
	for _, s := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := got[s]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", s)
		}
	}

	// A reload that works, then one that is refused.
	if err := os.WriteFile(pol, []byte("version: 1\nmode: audit\nnetwork:\n  deny_ports: [{port: 9, id: 41}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Signal(syscall.SIGHUP)
	m.WaitStderr("assay: reloaded ", 1, eventTimeout)
	if err := os.WriteFile(pol, []byte("version: 1\nnetwork:\n  deny_ports: [70000]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Signal(syscall.SIGHUP)
	m.WaitStderr("assay: reload refused", 1, eventTimeout)
	got = assaytest.ScrapeUntilSeries(t, url, map[string]float64{
		`assay_policy_reloads_total{result="ok"}`:                    1,
		`assay_policy_reloads_total{result="refused"}`:               1,
		`assay_policy_info{generation="2",mode="audit",version="1"}`: 1,
		`assay_events_total{action="blocked",path="socket"}`:         3,
	}, eventTimeout)
	if _, ok := got[`assay_policy_info{generation="1",mode="enforce",version="1"}`]; ok {
		t.Error("the replaced policy is still in assay_policy_info")
	}
	m.Stop()
}
