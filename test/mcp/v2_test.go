package mcp_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestNodeFilesystemServerV2 runs, started by node and by npx, the reference filesystem server from npm
// under a least-privilege version 2 policy (default deny, the runtime
// baseline, the projects root rw, the server's own code r) on the host,
// where Landlock enforces it, driven by the Go SDK client: read, write,
// edit, create_directory, move, search and list inside the projects root
// work (the Landlock fallback of version 1 made them fail), and a file in
// a second root the server serves but the policy does not allow is
// refused by the kernel (EACCES), for reading and writing, each with a
// BLOCKED FILE event.
func TestNodeFilesystemServerV2(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Fatal("npx is needed (Node.js with npm)")
	}
	t.Run("node", func(t *testing.T) {
		filesV2(t, assay, script, false, nil, func(code, root, outside string) []string { return []string{node, script, root, outside} })
	})
	// With --mcp the refusals' events name the tools/call that caused
	// them (tool and request id), as the relay saw it.
	t.Run("node-mcp", func(t *testing.T) {
		filesV2(t, assay, script, true, nil, func(code, root, outside string) []string { return []string{node, script, root, outside} })
	})
	// npx finds the pinned install's bin (no network: --offline, and no
	// update check); npm writes its logs under HOME, which the policy
	// allows (with version 1's Landlock fallback npx could not create
	// ~/.npm).
	t.Run("npx", func(t *testing.T) {
		home := t.TempDir()
		assaytest.PublicDir(t, home)
		os.Chown(home, 65534, 65534)
		env := append(os.Environ(), "HOME="+home, "npm_config_update_notifier=false")
		filesV2(t, assay, script, false, []string{home}, func(code, root, outside string) []string {
			return []string{"/bin/sh", "-c", `cd "$0" && exec "$1" --offline mcp-server-filesystem "$2" "$3"`, code, npx, root, outside}
		}, env...)
	})
}

func filesV2(t *testing.T, assay, script string, mcp bool, rw []string, server func(code, root, outside string) []string, env ...string) {
	base := t.TempDir()
	assaytest.PublicDir(t, base)
	root := filepath.Join(base, "projects")
	outside := filepath.Join(base, "outside")
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
	// The server runs as nobody: it owns the trees (the kernel policy,
	// not the file modes, decides here).
	filepath.Walk(base, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, 65534, 65534)
		}
		return err
	})
	// The server's code: the package directory of the pinned install.
	code := filepath.Dir(script)
	for !strings.HasSuffix(filepath.Dir(code), "node_modules") && filepath.Dir(code) != code {
		code = filepath.Dir(code)
	}
	code = filepath.Dir(filepath.Dir(code)) // the install's root, holding node_modules
	if strings.HasPrefix(filepath.Base(filepath.Dir(code)), "node_modules") {
		code = filepath.Dir(code)
	}
	extra := ""
	for _, d := range rw {
		extra += fmt.Sprintf("    - {path: %s/, access: rw}\n", d)
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`version: 2
files:
  default: deny
  allow:
    - {path: %s/, access: rw, id: 10}
    - {path: %s/, access: rx, id: 11}
%snetwork:
  default: deny
`, root, code, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	var flags []string
	if mcp {
		flags = append(flags, "--mcp")
	}
	s := mcptest.Start(t, mcptest.Options{Assay: assay, Policy: policy, Server: server(code, root, outside), Env: env, Flags: flags})
	call := func(tool string, args map[string]any) (string, bool) {
		t.Helper()
		res := s.Call(tool, args)
		return mcptest.TextOf(res), res.IsError
	}
	ok := func(what, tool string, args map[string]any, want string) {
		t.Helper()
		got, isErr := call(tool, args)
		if isErr || !strings.Contains(got, want) {
			t.Errorf("%s (%s): isError=%v %q, want success containing %q\nassay stderr:\n%s", what, tool, isErr, got, want, s.Stderr())
		}
	}
	refused := func(what, tool string, args map[string]any) {
		t.Helper()
		got, isErr := call(tool, args)
		if !isErr || !strings.Contains(strings.ToLower(got), "permission denied") || strings.Contains(got, "TOP SECRET") {
			t.Errorf("%s (%s): isError=%v %q, want a permission denied tool error", what, tool, isErr, got)
		}
	}
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	ok("read", "read_text_file", map[string]any{"path": j("README.md")}, "hello projects")
	ok("write", "write_file", map[string]any{"path": j("notes.txt"), "content": "first draft\n"}, "")
	ok("read back", "read_text_file", map[string]any{"path": j("notes.txt")}, "first draft")
	ok("edit", "edit_file", map[string]any{"path": j("notes.txt"), "edits": []map[string]any{{"oldText": "first", "newText": "second"}}}, "")
	ok("read edited", "read_text_file", map[string]any{"path": j("notes.txt")}, "second draft")
	ok("create_directory", "create_directory", map[string]any{"path": j("docs", "archive")}, "")
	ok("move", "move_file", map[string]any{"source": j("notes.txt"), "destination": j("docs", "archive", "notes.txt")}, "")
	ok("search", "search_files", map[string]any{"path": root, "pattern": "**/notes.txt"}, "notes.txt")
	ok("list", "list_directory", map[string]any{"path": j("docs", "archive")}, "notes.txt")
	refused("read outside the allowed tree", "read_text_file", map[string]any{"path": filepath.Join(outside, "secret.txt")})
	refused("write outside the allowed tree", "write_file", map[string]any{"path": filepath.Join(outside, "new.txt"), "content": "x"})
	if _, err := os.Stat(filepath.Join(outside, "new.txt")); err == nil {
		t.Error("the write outside the allowed tree created the file")
	}
	if b, err := os.ReadFile(j("docs", "archive", "notes.txt")); err != nil || string(b) != "second draft\n" {
		t.Errorf("moved file: %q, %v", b, err)
	}
	r := s.Close()
	if r.ExitCode != 0 {
		t.Errorf("assay exited %d\n%s", r.ExitCode, strings.Join(r.Stderr, "\n"))
	}
	// The refusals are events (from the traced opens, under Landlock):
	// the path, the operation and the deciding rule (files.default).
	// (The server opens the directory before it writes a new file: the
	// refusal of the write is the refusal of that open.)
	for i, p := range []string{filepath.Join(outside, "secret.txt"), outside} {
		found := false
		for _, e := range r.Events {
			if e.Kind == "file" && e.Verdict == "blocked" && e.Path == p && e.RuleID == 1000002 && e.Op == "open" {
				found = true
				if mcp && i == 0 {
					mcptest.CheckMCPContext(t, e, mcptest.CallIDs(t, r, "read_text_file", "path", p), "read_text_file")
				}
				if mcp && i == 1 {
					mcptest.CheckMCPContext(t, e, mcptest.CallIDs(t, r, "write_file", "path", filepath.Join(outside, "new.txt")), "write_file")
				}
			}
		}
		if !found {
			var lines []string
			for _, e := range r.Events {
				lines = append(lines, e.Line)
			}
			t.Errorf("no blocked file event for %s (rule 1000002) among:\n%s", p, strings.Join(lines, "\n"))
		}
	}
	if got := r.Report.Mechanism(10); got != mcptest.MechLandlock && got != mcptest.MechBPFLSM {
		t.Errorf("rule 10 enforced by %q\n%s", got, strings.Join(r.Stderr, "\n"))
	}
}
