package mcp_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestStockCommandTransport: exactly what an MCP host built on the Go SDK
// does - mcp.CommandTransport over an exec.Cmd of `assay run -- node
// <reference filesystem server> ROOT`, default client options - works:
// the session initializes, an allowed read returns the content, a denied
// one is a tool error, and closing the session ends assay with status 0
// within the SDK's own shutdown (no SIGTERM needed). The other tests use
// mcptest.CommandTransport, which adds recording of every byte.
func TestStockCommandTransport(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	t.Parallel()

	root := t.TempDir()
	assaytest.PublicDir(t, root) // the server runs unprivileged
	allowed, denied := filepath.Join(root, "readme.md"), filepath.Join(root, ".env")
	for p, content := range map[string]string{allowed: "# hello\n", denied: "API_KEY=sk-not-real\n"} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nfiles:\n  deny: [{path: "+denied+", id: 3}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(assay, "run", "--policy", policy, "--", node, script, root)
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "stock", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr:\n%s", err, stderr.String())
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if !slices.Contains(names, "read_text_file") {
		t.Fatalf("tools/list: no read_text_file in %q", names)
	}
	read := func(p string) *mcp.CallToolResult {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": p}})
		if err != nil {
			t.Fatalf("read_text_file %s: %v\nstderr:\n%s", p, err, stderr.String())
		}
		return res
	}
	if res := read(allowed); res.IsError || mcptest.TextOf(res) != "# hello\n" {
		t.Errorf("allowed read: isError=%v %q", res.IsError, mcptest.TextOf(res))
	}
	if res := read(denied); !res.IsError || strings.Contains(mcptest.TextOf(res), "sk-not-real") {
		t.Errorf("denied read: isError=%v %q", res.IsError, mcptest.TextOf(res))
	}
	if res := read(allowed); res.IsError {
		t.Errorf("allowed read after the denied one: %q", mcptest.TextOf(res))
	}
	// Status 0 proves that no SIGTERM was needed, without a wall-clock
	// threshold: had the SDK sent one (after its 5 s), assay would have
	// forwarded it to node, which has no handler and dies of it, and
	// assay would exit 128+15.
	if err := cs.Close(); err != nil {
		t.Errorf("close: %v (assay exit %v)\nstderr:\n%s", err, cmd.ProcessState, stderr.String())
	}
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("assay: %v, want exit 0 (143: the SDK had to send SIGTERM)\nstderr:\n%s", cmd.ProcessState, stderr.String())
	}
}
