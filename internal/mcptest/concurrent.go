package mcptest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ConcurrentScenario runs a fetch MCP server under `assay run --mcp` and
// has two tools/call in flight at once: a fetch from a loopback listener
// that holds its answer until released, and, while it waits, a fetch from
// a denied port (rule 40). The blocked connect event must name both calls,
// oldest first, by tool and request id: when several calls are in flight
// assay names them all rather than guess.
func ConcurrentScenario(t *testing.T, assay string, server []string) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slowURL := "http://" + ln.Addr().String() + "/slow"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-time.After(CallTimeout):
		}
		fmt.Fprint(w, "slow body")
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	denied := serveHTTP(t, "127.0.0.1:0", "the denied port answered")
	policy := writePolicy(t, fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: %d, id: %d}]\n", denied.port, PortRuleID))

	s := Start(t, Options{Assay: assay, Policy: policy, Server: server, Flags: []string{"--mcp"}})
	slow := make(chan *mcp.CallToolResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
		defer cancel()
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: testserver.FetchTool, Arguments: map[string]any{"url": slowURL}})
		if err != nil {
			t.Errorf("the slow fetch: %v", err)
		}
		slow <- res
	}()
	select {
	case <-arrived:
	case <-time.After(CallTimeout):
		close(release)
		t.Fatalf("the slow fetch never reached its listener; assay stderr:\n%s", s.Stderr())
	}
	res := s.Call(testserver.FetchTool, map[string]any{"url": denied.url})
	close(release)
	if !res.IsError {
		t.Errorf("the denied fetch: %q, want a tool error", TextOf(res))
	}
	if res := <-slow; res == nil || res.IsError || TextOf(res) != "slow body" {
		t.Errorf("the slow fetch: %+v", res)
	}
	r := s.Close()
	checkEnded(t, r, "initialize", "notifications/initialized", "tools/call")
	if len(r.Events) != 1 {
		t.Fatalf("%d events, want 1:\n%s", len(r.Events), eventLines(r.Events))
	}
	t.Logf("event: %s", r.Events[0].Line)
	ids := append(CallIDs(t, r, testserver.FetchTool, "url", slowURL), CallIDs(t, r, testserver.FetchTool, "url", denied.url)...)
	CheckMCPContext(t, r.Events[0], ids, testserver.FetchTool, testserver.FetchTool)
}
