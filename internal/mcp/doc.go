// Package mcp is assay's MCP awareness (`assay run --mcp`): a relay that
// carries the stdio transport of an MCP server (newline-delimited JSON-RPC
// 2.0) between the client and the server byte for byte, follows its
// requests and responses, and applies the policy's tool rules.
//
//   - Every byte passes unchanged in both directions, in the same order,
//     including lines that are not JSON (a server's stray output), lines
//     split across many reads, and a last line without a newline. Lines are
//     forwarded whole (once their newline arrived), so the relay can read
//     each message before it passes it on. Two exceptions, both only with
//     tool rules: a refused tools/call is not forwarded (the client gets a
//     JSON-RPC error instead), and a tools/list result that names refused
//     tools is forwarded without them.
//   - The Tracker knows, for any kernel time, which requests had been sent
//     to the server and not answered yet: the MCP context of an event.
//   - A line from the server longer than MaxLine is forwarded as it comes,
//     without being read (bounding the relay's memory against a hostile
//     server); the response it may hold is then not seen.
package mcp
