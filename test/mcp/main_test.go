// Package mcp_test runs real MCP sessions through `assay run` on this host:
// an MCP client written with the official Go SDK
// (github.com/modelcontextprotocol/go-sdk) talks over stdio to
//
//   - the reference filesystem server from npm
//     (@modelcontextprotocol/server-filesystem, pinned by
//     internal/mcptest/npm/package-lock.json, installed once into
//     .cache/npm), under Node.js;
//   - internal/mcptest's own servers (mcp-testserver files|fetch).
//
// Each test checks that a denied file or destination is refused as a tool
// error while the session stays healthy: every byte on the server's stdout
// is JSON-RPC (mcptest.CommandTransport records them), and the server keeps
// serving after a refusal. TestStockCommandTransport uses the SDK's own
// mcp.CommandTransport, as an MCP host would. On this host
// file rules are enforced by Landlock (BPF LSM is refused) or, where BPF
// LSM works, by BPF LSM with events; the BPF-LSM path with events is
// asserted in the vmtest guest (test/lsm/mcp_test.go).
//
// It needs root (CI=true turns a skip into a failure), and Node.js 20+ with
// npm for the reference server (also a failure under CI=true when missing).
//
//	CI=true go test ./test/mcp/ -count=1 -v
//
// ASSAY_BIN and ASSAY_MCP_TESTSERVER select prebuilt binaries; by default
// both are built once per run.
package mcp_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/mcptest"
)

func TestMain(m *testing.M) { mcptest.Main(m) }
