package mcp_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestFetchEgress: mcp-testserver fetch under `assay run`, denying one
// loopback listener's port and 127.0.0.3/32: a fetch from the allowed
// listener returns its body, fetches from the denied port and address are
// tool errors (EPERM) with a BLOCKED CONNECT event naming the rule, and
// the server keeps serving. JSON events from --events FILE, and text
// events on stderr.
func TestFetchEgress(t *testing.T) {
	assaytest.Privileged(t)
	assay, server := mcptest.AssayBinary(t), mcptest.ServerBinary(t)
	t.Parallel()
	for _, out := range []string{mcptest.JSON, mcptest.Text} {
		t.Run(out, func(t *testing.T) {
			t.Parallel()
			mcptest.FetchScenario(t, mcptest.FetchConfig{
				Assay:  assay,
				Server: []string{server, "fetch"},
				Output: out,
				Comm:   "mcp-testserver",
			})
		})
	}
}
