package testserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// connectInMemory serves s to a fresh client over the SDK's in-memory
// transport.
func connectInMemory(t *testing.T, s *mcp.Server) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := s.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return textOf(res), res.IsError
}

func TestFilesServer(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a.txt"), "alpha\n")
	writeFile(t, filepath.Join(root, "d", "b.txt"), "beta\n")
	writeFile(t, filepath.Join(filepath.Dir(root), filepath.Base(root)+"-sibling.txt"), "outside\n")
	cs := connectInMemory(t, NewFiles(root))

	for _, c := range []struct {
		path, want string
		isErr      bool
	}{
		{"a.txt", "alpha\n", false},
		{filepath.Join(root, "a.txt"), "alpha\n", false},
		{"d/b.txt", "beta\n", false},
		{"d/../a.txt", "alpha\n", false},
		{"missing.txt", "no such file or directory", true},
		{"../" + filepath.Base(root) + "-sibling.txt", "outside", true},
		{"/etc/hostname", "outside", true},
		{"", "empty", true},
		{"d", "is a directory", true},
	} {
		got, isErr := call(t, cs, ReadFileTool, map[string]any{"path": c.path})
		if isErr != c.isErr || (isErr && !strings.Contains(got, c.want)) || (!isErr && got != c.want) {
			t.Errorf("read_file %q: isError=%v %q, want isError=%v %q", c.path, isErr, got, c.isErr, c.want)
		}
	}
}

func TestFetchServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, "body of "+r.URL.Path)
	}))
	defer srv.Close()
	// A port nothing listens on: listen, note the port, close.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	// Proxies from the environment are ignored.
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")
	cs := connectInMemory(t, NewFetch())

	for _, c := range []struct {
		url, want string
		isErr     bool
	}{
		{srv.URL + "/x", "body of /x", false},
		{srv.URL + "/missing", "404 Not Found: nope", true},
		{closed, "connect: connection refused", true},
		{"file:///etc/passwd", "only http://", true},
	} {
		got, isErr := call(t, cs, FetchTool, map[string]any{"url": c.url})
		if isErr != c.isErr || (isErr && !strings.Contains(got, c.want)) || (!isErr && got != c.want) {
			t.Errorf("fetch %q: isError=%v %q, want isError=%v %q", c.url, isErr, got, c.isErr, c.want)
		}
	}
}

func TestUnderRoot(t *testing.T) {
	for _, c := range []struct{ p, want string }{
		{"a", "/r/a"}, {"/r/a/../b", "/r/b"}, {"/r", "/r"}, {"..", ""}, {"../r2/x", ""}, {"/r2", ""}, {"/", ""}, {"..x", "/r/..x"},
	} {
		got, err := underRoot("/r", c.p)
		if (err != nil) != (c.want == "") || (err == nil && got != c.want) {
			t.Errorf("underRoot(/r, %q) = %q, %v; want %q", c.p, got, err, c.want)
		}
	}
}

// textOf joins the text content of a tool result.
func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
