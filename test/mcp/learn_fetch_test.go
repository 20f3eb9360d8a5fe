package mcp_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestLearnFetchServer: the test MCP server's fetch tool observed by assay
// learn fetching from one loopback listener; under assay run with the
// learned policy that fetch returns the same body, and a fetch from a
// second listener (an address and port outside the learned set) is a tool
// error with one BLOCKED CONNECT event naming it.
func TestLearnFetchServer(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	serve := func(body string) (string, int) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
		t.Cleanup(ts.Close)
		return ts.URL, ts.Listener.Addr().(*net.TCPAddr).Port
	}
	learnedURL, _ := serve("alpha")
	otherURL, otherPort := serve("beta")
	pol := filepath.Join(t.TempDir(), "learned.yaml")
	s := mcptest.Start(t, mcptest.Options{Assay: assay, Learn: pol, Server: []string{server, "fetch"}})
	res := s.Call("fetch", map[string]any{"url": learnedURL})
	if r := s.Close(); r.ExitCode != 0 || res.IsError || mcptest.TextOf(res) != "alpha" {
		t.Fatalf("observed fetch: exit %d, %q\n%s", r.ExitCode, mcptest.TextOf(res), strings.Join(r.Stderr, "\n"))
	}
	text, _ := os.ReadFile(pol)
	t.Logf("learned policy:\n%s", text)

	s = mcptest.Start(t, mcptest.Options{Assay: assay, Policy: pol, Server: []string{server, "fetch"}})
	again := s.Call("fetch", map[string]any{"url": learnedURL})
	denied := s.Call("fetch", map[string]any{"url": otherURL})
	r := s.Close()
	if again.IsError || mcptest.TextOf(again) != "alpha" {
		t.Errorf("the learned fetch under the learned policy: %q", mcptest.TextOf(again))
	}
	if !denied.IsError || !strings.Contains(mcptest.TextOf(denied), "operation not permitted") {
		t.Errorf("a fetch outside the learned set: isError=%v %q", denied.IsError, mcptest.TextOf(denied))
	}
	var blocked []string
	for _, e := range r.Events {
		if e.Verdict == "blocked" {
			blocked = append(blocked, e.Line)
			if e.Kind != "connect" || int(e.DstPort) != otherPort {
				t.Errorf("block %s, want a connect to port %d", e.Line, otherPort)
			}
		}
	}
	if len(blocked) != 1 {
		t.Errorf("want one block, got:\n%s\nassay stderr:\n%s", strings.Join(blocked, "\n"), strings.Join(r.Stderr, "\n"))
	}
}
