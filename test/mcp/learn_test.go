package mcp_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestLearnFilesystemServer: the npm filesystem server, driven by the Go
// SDK client through a scripted session (list, read, write, edit,
// create_directory, move, search), observed by assay learn; the same
// session under assay run with the learned policy: zero blocks and
// identical tool results; then a read in the server's second root, which
// the learned run never touched, is refused with a BLOCKED FILE event.
func TestLearnFilesystemServer(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	base := t.TempDir()
	assaytest.PublicDir(t, base)
	root := filepath.Join(base, "projects")
	outside := filepath.Join(base, "outside")
	reset := func() {
		os.RemoveAll(root)
		for p, c := range map[string]string{
			filepath.Join(root, "README.md"):      "hello projects\n",
			filepath.Join(root, "src", "main.go"): "package main\n",
			filepath.Join(outside, "secret.txt"):  "TOP SECRET\n",
		} {
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		filepath.Walk(base, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				os.Lchown(p, 65534, 65534)
			}
			return err
		})
	}
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	session := func(s *mcptest.Session) []string {
		var out []string
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"list_directory", map[string]any{"path": root}},
			{"read_text_file", map[string]any{"path": j("README.md")}},
			{"write_file", map[string]any{"path": j("notes.txt"), "content": "first draft\n"}},
			{"edit_file", map[string]any{"path": j("notes.txt"), "edits": []map[string]any{{"oldText": "first", "newText": "second"}}}},
			{"read_text_file", map[string]any{"path": j("notes.txt")}},
			{"create_directory", map[string]any{"path": j("docs", "archive")}},
			{"move_file", map[string]any{"source": j("notes.txt"), "destination": j("docs", "archive", "notes.txt")}},
			{"search_files", map[string]any{"path": root, "pattern": "**/notes.txt"}},
			{"read_text_file", map[string]any{"path": j("docs", "archive", "notes.txt")}},
		} {
			res := s.Call(c.tool, c.args)
			out = append(out, c.tool+" "+map[bool]string{true: "ERROR ", false: ""}[res.IsError]+mcptest.TextOf(res))
		}
		return out
	}
	server := []string{node, script, root, outside}

	reset()
	pol := filepath.Join(t.TempDir(), "learned.yaml")
	s := mcptest.Start(t, mcptest.Options{Assay: assay, Learn: pol, Server: server})
	learned := session(s)
	r := s.Close()
	if r.ExitCode != 0 {
		t.Fatalf("assay learn exited %d\n%s", r.ExitCode, strings.Join(r.Stderr, "\n"))
	}
	for _, l := range learned {
		if strings.Contains(l, "ERROR") {
			t.Errorf("observed session: %s", l)
		}
	}
	text, err := os.ReadFile(pol)
	if err != nil {
		t.Fatalf("no learned policy: %v\n%s", err, strings.Join(r.Stderr, "\n"))
	}
	t.Logf("learned policy:\n%s", text)
	for _, l := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "- ") && strings.Contains(l, outside) {
			t.Errorf("the learned policy allows %s, which the run never touched: %s", outside, l)
		}
	}

	reset()
	s = mcptest.Start(t, mcptest.Options{Assay: assay, Policy: pol, Server: server})
	enforced := session(s)
	denied := s.Call("read_text_file", map[string]any{"path": filepath.Join(outside, "secret.txt")})
	r = s.Close()
	if strings.Join(enforced, "\n") != strings.Join(learned, "\n") {
		t.Errorf("tool results differ under the learned policy:\n%s\n--- observed:\n%s", strings.Join(enforced, "\n"), strings.Join(learned, "\n"))
	}
	if !denied.IsError || strings.Contains(mcptest.TextOf(denied), "TOP SECRET") {
		t.Errorf("read outside the learned set: %q", mcptest.TextOf(denied))
	}
	var blocked []string
	for _, e := range r.Events {
		if e.Verdict == "blocked" {
			blocked = append(blocked, e.Line)
		}
	}
	if len(blocked) != 1 || !strings.Contains(blocked[0], filepath.Join(outside, "secret.txt")) {
		t.Errorf("want exactly one block, of %s; got:\n%s\nassay stderr:\n%s", filepath.Join(outside, "secret.txt"), strings.Join(blocked, "\n"), strings.Join(r.Stderr, "\n"))
	}
}
