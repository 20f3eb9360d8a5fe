package mcptest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MetricsScenario runs a fetch server under `assay run --mcp --metrics :0`
// with a denied port (rule 40) and a tool rule (deny "forbidden_*", rule
// 61), makes a known sequence of calls - two fetches that work, one from
// the denied port (a tool error), one call of a refused tool - and checks
// the scraped metrics exactly: tool calls by outcome, events by path, rule
// hits, the ring buffer.
func MetricsScenario(t *testing.T, assay string, server []string) {
	allowed := serveHTTP(t, "127.0.0.1:0", "hello")
	var denied *httpListener
	for range 20 {
		if d := serveHTTP(t, "127.0.0.1:0", "no"); d.port != allowed.port {
			denied = d
			break
		}
	}
	policy := writePolicy(t, fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: %d, id: %d}]\nmcp:\n  tools:\n    deny: [{tool: \"forbidden_*\", id: 61}]\n", denied.port, PortRuleID))
	s := Start(t, Options{Assay: assay, Policy: policy, Server: server, Flags: []string{"--mcp", "--metrics", ":0"}})
	url := assaytest.MetricsURL(unmarked(lines(s.Stderr())))
	if url == "" {
		t.Fatalf("no metrics address on stderr:\n%s", s.Stderr())
	}
	for range 2 {
		if res := s.Call(testserver.FetchTool, map[string]any{"url": allowed.url}); res.IsError {
			t.Errorf("allowed fetch: %s", TextOf(res))
		}
	}
	if res := s.Call(testserver.FetchTool, map[string]any{"url": denied.url}); !res.IsError {
		t.Errorf("denied fetch: %s", TextOf(res))
	}
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "forbidden_thing", Arguments: map[string]any{}})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "rule 61") {
		t.Errorf("the refused tool: %v", err)
	}
	got := assaytest.ScrapeUntilSeries(t, url, map[string]float64{
		`assay_mcp_tool_calls_total{outcome="ok",tool="fetch"}`:                2,
		`assay_mcp_tool_calls_total{outcome="error",tool="fetch"}`:             1,
		`assay_mcp_tool_calls_total{outcome="blocked",tool="forbidden_thing"}`: 1,
		`assay_events_total{action="blocked",path="socket"}`:                   1,
		`assay_events_total{action="blocked",path="mcp"}`:                      1,
		`assay_rule_hits_total{rule_id="40"}`:                                  1,
		`assay_rule_hits_total{rule_id="61"}`:                                  1,
		`assay_ringbuf_events_total{outcome="emitted",path="socket"}`:          1,
		`assay_policy_info{generation="1",mode="enforce",version="1"}`:         1,
	}, 10*time.Second)
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "assay_mcp_tool_calls_total{") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d tool call series, want 3", n)
	}
	r := s.Close()
	checkEnded(t, r, "initialize", "notifications/initialized", "tools/call")
}
