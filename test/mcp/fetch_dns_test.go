package mcp_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/dns/dnstest"
	"github.com/assaymcp/assay/internal/mcptest"
	"github.com/assaymcp/assay/internal/mcptest/testserver"
)

// TestFetchHostEntries: mcp-testserver fetch under `assay run` with a
// policy allowing one name (host entry, one port). The server resolves
// through 127.0.0.53:53 (MCP_TESTSERVER_DNS), which the cgroup programs
// send to assay's resolver; the test upstream answers on 127.0.0.1. A
// fetch from the allowed name returns its body; one from another name is
// a tool error (the name does not exist) with a BLOCKED DNS event, and
// the upstream never hears of it; one from the allowed address written as
// an address, on a port the entry does not name, is refused (EPERM) with a
// BLOCKED CONNECT event.
func TestFetchHostEntries(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	up := dnstest.Start(t, "127.0.0.1", []string{
		"api.fetch.test. 60 IN A 127.0.0.21",
		"other.fetch.test. 60 IN A 127.0.0.21",
	})
	port := serve(t, "127.0.0.21:0", "hello from api.fetch.test")
	other := serve(t, "127.0.0.21:0", "the other port answered")
	policy := writeFile(t, fmt.Sprintf(`version: 2
network:
  default: deny
  allow:
    - {host: api.fetch.test, ports: [%d], proto: tcp, id: 30}
dns:
  upstream: ["%s"]
`, port, up.Addr))
	s := mcptest.Start(t, mcptest.Options{Assay: assay, Policy: policy, Output: mcptest.JSON, Server: []string{server, "fetch"},
		Env: append(os.Environ(), "MCP_TESTSERVER_DNS=127.0.0.53:53")})
	fetch := func(url string) (string, bool) {
		res := s.Call(testserver.FetchTool, map[string]any{"url": url})
		return mcptest.TextOf(res), res.IsError
	}
	if got, isErr := fetch(fmt.Sprintf("http://api.fetch.test:%d/", port)); isErr || got != "hello from api.fetch.test" {
		t.Errorf("allowed name: isError=%v %q\n%s", isErr, got, s.Stderr())
	}
	if got, isErr := fetch(fmt.Sprintf("http://other.fetch.test:%d/", port)); !isErr || !strings.Contains(got, "no such host") {
		t.Errorf("other name: isError=%v %q", isErr, got)
	}
	if got, isErr := fetch(fmt.Sprintf("http://127.0.0.21:%d/", other)); !isErr || !strings.Contains(got, "connect: operation not permitted") {
		t.Errorf("learned address on another port: isError=%v %q", isErr, got)
	}
	r := s.Close()
	if len(r.Problems) > 0 {
		t.Errorf("problems: %q", r.Problems)
	}
	if up.WasAsked("other.fetch.test") {
		t.Errorf("other.fetch.test reached the upstream: %v", up.Asked())
	}
	var dnsEv, connEv int
	for _, e := range r.Events {
		switch {
		case e.Kind == "dns" && e.Verdict == "blocked" && e.QType == "A" && strings.HasPrefix(e.Query, "other.fetch.test") && e.RuleID == 1000005:
			dnsEv++
		case e.Kind == "connect" && e.Verdict == "blocked" && e.DstAddr == "127.0.0.21" && e.DstPort == other && e.RuleID == 1000000:
			connEv++
		default:
			if e.Kind != "dns" {
				t.Errorf("unexpected event %s", e.Line)
			}
		}
	}
	if dnsEv == 0 || connEv != 1 {
		t.Errorf("%d BLOCKED DNS events for other.fetch.test, %d BLOCKED CONNECT (want >0, 1):\n%s", dnsEv, connEv, s.Stderr())
	}
}

func serve(t *testing.T, addr, body string) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := t.TempDir() + "/policy.yaml"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
