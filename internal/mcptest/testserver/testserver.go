// Package testserver holds the MCP tool servers Assay's tests run under
// `assay run` (built into ./cmd/mcp-testserver), written with the official
// Go SDK. They are deliberately naive: they do what a real tool server does
// (open the file they are asked for, connect where they are told) and leave
// the refusing to the kernel, which is the point of running them under
// Assay. Nothing here depends on the test support code, so the binary stays
// small and static.
package testserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tool and server names.
const (
	ReadFileTool = "read_file"
	FetchTool    = "fetch"

	filesServerName = "assay-mcptest-files"
	fetchServerName = "assay-mcptest-fetch"
	Version         = "1.0.0" // of the servers and the test client
)

// MaxFetchBody bounds the body the fetch tool returns.
const MaxFetchBody = 1 << 20

// ReadFileArgs are the arguments of the read_file tool.
type ReadFileArgs struct {
	Path string `json:"path" jsonschema:"the file to read: absolute inside the server's root, or relative to it"`
}

// FetchArgs are the arguments of the fetch tool.
type FetchArgs struct {
	URL string `json:"url" jsonschema:"the http:// URL to GET"`
}

// NewFiles returns an MCP server with one tool, read_file, that reads
// a file under root and returns its content as text. Any failure - a path
// outside root, or the open(2) the kernel refuses - is a tool error
// (isError) whose text is the Go error, e.g. "open /r/secret: operation not
// permitted". root must be absolute.
func NewFiles(root string) *mcp.Server {
	root = filepath.Clean(root)
	s := mcp.NewServer(&mcp.Implementation{Name: filesServerName, Version: Version}, nil)
	mcp.AddTool(s, &mcp.Tool{
		Name:        ReadFileTool,
		Description: "Read the complete contents of a file under the server's root directory as text.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in ReadFileArgs) (*mcp.CallToolResult, any, error) {
		p, err := underRoot(root, in.Path)
		if err != nil {
			return nil, nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
	})
	return s
}

// underRoot resolves p (absolute, or relative to root) and refuses a result
// outside root. It is lexical only: this server is a test subject, and
// symlinks are the kernel's business (Assay judges the inode opened).
func underRoot(root, p string) (string, error) {
	if p == "" {
		return "", errors.New("path is empty")
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	p = filepath.Clean(p)
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("access denied: %s is outside %s", p, root)
	}
	return p, nil
}

// NewFetch returns an MCP server with one tool, fetch, that GETs an
// http:// URL and returns the body (at most MaxFetchBody bytes) as text. A
// failed request, or a status other than 2xx, is a tool error whose text is
// the Go error (e.g. `Get "http://127.0.0.1:8080/": dial tcp
// 127.0.0.1:8080: connect: operation not permitted`) or the status and body.
// Proxies from the environment are ignored and every request opens a new
// connection (no keep-alive), so that each call is judged by the kernel.
//
// With $MCP_TESTSERVER_DNS set to ADDR:PORT, names are resolved by Go's own
// resolver asking that server (port 53 on a loopback address in tests:
// assay redirects it to its resolver) instead of /etc/resolv.conf's.
func NewFetch() *mcp.Server {
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
	}
	if server := os.Getenv("MCP_TESTSERVER_DNS"); server != "" {
		d := &net.Dialer{Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, server)
		}}}
		tr.DialContext = d.DialContext
	}
	client := &http.Client{
		Timeout:   15 * time.Second,
		Transport: tr,
	}
	s := mcp.NewServer(&mcp.Implementation{Name: fetchServerName, Version: Version}, nil)
	mcp.AddTool(s, &mcp.Tool{
		Name:        FetchTool,
		Description: "Fetch a URL with HTTP GET and return the response body as text.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, func(ctx context.Context, _ *mcp.CallToolRequest, in FetchArgs) (*mcp.CallToolResult, any, error) {
		if !strings.HasPrefix(in.URL, "http://") {
			return nil, nil, fmt.Errorf("only http:// URLs are supported: %q", in.URL)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL, nil)
		if err != nil {
			return nil, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchBody))
		if err != nil {
			return nil, nil, fmt.Errorf("reading the body of %s: %w", in.URL, err)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, nil, fmt.Errorf("GET %s: %s: %s", in.URL, resp.Status, body)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(body)}}}, nil, nil
	})
	return s
}

// LogRequestsEnv names the file, if set, where mcp-testserver appends a
// line for every request it receives: the method, and for tools/call the
// tool ("tools/call read_file"). It is the server's own record of what
// reached it.
const LogRequestsEnv = "ASSAY_MCPTEST_LOG"

// LogRequests makes s append a line to w for every request it receives
// (see LogRequestsEnv).
func LogRequests(s *mcp.Server, w io.Writer) {
	s.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			line := method
			if p, ok := req.GetParams().(*mcp.CallToolParamsRaw); ok {
				line += " " + p.Name
			}
			fmt.Fprintln(w, line)
			return next(ctx, method, req)
		}
	})
}
