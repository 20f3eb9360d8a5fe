// Package mcptest holds the MCP (Model Context Protocol) support of Assay's
// end-to-end tests: an MCP client session (the official Go SDK's client)
// that drives a tool server under `assay run` over stdio while recording
// every byte both ways, strict checks of that JSON-RPC stream, the pinned
// reference servers from npm, and the scenarios test/mcp (on the host) and
// test/lsm (in the BPF-LSM guest) share. The servers themselves are in
// ./testserver, built into ./cmd/mcp-testserver.
package mcptest
