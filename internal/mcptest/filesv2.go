package mcptest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"golang.org/x/sys/unix"
)

// Rule ids of the version 2 files scenario's policy.
const (
	V2RootRuleID = 10 // files.allow: the projects root, rw
	V2CodeRuleID = 11 // files.allow: the server's code, rx
	V2EnvRuleID  = 12 // files.deny: ROOT/.env (BPF LSM only: Landlock cannot make that hole in an rw tree)
	V2DefaultID  = 1000002
)

// FilesV2Config is one run of FilesV2Scenario.
type FilesV2Config struct {
	Assay string
	// Code is the server's code: the install directory holding
	// node_modules (the policy allows it rx).
	Code string
	// Server returns the server's command line serving root and outside.
	Server func(code, root, outside string) []string
	MCP    bool     // assay run --mcp
	RW     []string // more directories the policy allows rw
	Env    []string // assay's environment (nil: this process's)
	// Mechanism the file rules must be enforced with. With MechBPFLSM the
	// policy also denies ROOT/.env, events name inodes (not paths), and
	// every BLOCKED FILE event of the session must be one the scenario
	// caused (nothing the server needs to start or serve is refused).
	Mechanism string
	Slow      int // Options.Slow
}

// FilesV2Scenario runs the reference filesystem server from npm under a
// least-privilege version 2 policy (default deny, the runtime baseline, the
// projects root rw, the server's code rx) and drives it with the Go SDK
// client: read, write, edit, create_directory, move, search and list inside
// the projects root work; a file in a second root the server serves but the
// policy does not allow is refused by the kernel, for reading and writing,
// and (BPF LSM) so is ROOT/.env, each with a BLOCKED FILE event under the
// deciding rule.
func FilesV2Scenario(t *testing.T, c FilesV2Config) {
	t.Helper()
	base := t.TempDir()
	assaytest.PublicDir(t, base)
	root := filepath.Join(base, "projects")
	outside := filepath.Join(base, "outside")
	lsm := c.Mechanism == MechBPFLSM
	files := map[string]string{
		filepath.Join(root, "README.md"):      "hello projects\n",
		filepath.Join(root, "src", "main.go"): "package main\n",
		filepath.Join(outside, "secret.txt"):  "TOP SECRET\n",
	}
	if lsm {
		files[filepath.Join(root, ".env")] = "TOP SECRET=1\n"
	}
	for p, data := range files {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
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
	extra := ""
	for _, d := range c.RW {
		extra += fmt.Sprintf("    - {path: %s/, access: rw}\n", d)
	}
	deny := ""
	if lsm {
		deny = fmt.Sprintf("  deny:\n    - {path: %s/.env, id: %d}\n", root, V2EnvRuleID)
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`version: 2
files:
  default: deny
  allow:
    - {path: %s/, access: rw, id: %d}
    - {path: %s/, access: rx, id: %d}
%s%snetwork:
  default: deny
`, root, V2RootRuleID, c.Code, V2CodeRuleID, extra, deny)), 0o644); err != nil {
		t.Fatal(err)
	}
	var flags []string
	if c.MCP {
		flags = append(flags, "--mcp")
	}
	s := Start(t, Options{Assay: c.Assay, Policy: policy, Server: c.Server(c.Code, root, outside), Env: c.Env, Flags: flags, Slow: c.Slow})
	call := func(tool string, args map[string]any) (string, bool) {
		t.Helper()
		res := s.Call(tool, args)
		return TextOf(res), res.IsError
	}
	ok := func(what, tool string, args map[string]any, want string) {
		t.Helper()
		got, isErr := call(tool, args)
		if isErr || !strings.Contains(got, want) {
			t.Errorf("%s (%s): isError=%v %q, want success containing %q\nassay stderr:\n%s", what, tool, isErr, got, want, s.Stderr())
		}
	}
	errText := map[bool]string{false: "permission denied", true: "operation not permitted"}[lsm]
	refused := func(what, tool string, args map[string]any) {
		t.Helper()
		got, isErr := call(tool, args)
		if !isErr || !strings.Contains(strings.ToLower(got), errText) || strings.Contains(got, "TOP SECRET") {
			t.Errorf("%s (%s): isError=%v %q, want a %s tool error", what, tool, isErr, got, errText)
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
	if lsm {
		refused("read .env in the projects root", "read_text_file", map[string]any{"path": j(".env")})
		refused("overwrite .env in the projects root", "write_file", map[string]any{"path": j(".env"), "content": "x"})
	}
	if _, err := os.Stat(filepath.Join(outside, "new.txt")); err == nil {
		t.Error("the write outside the allowed tree created the file")
	}
	if b, err := os.ReadFile(j("docs", "archive", "notes.txt")); err != nil || string(b) != "second draft\n" {
		t.Errorf("moved file: %q, %v", b, err)
	}
	if lsm {
		if b, err := os.ReadFile(j(".env")); err != nil || string(b) != "TOP SECRET=1\n" {
			t.Errorf(".env after the refused write: %q, %v", b, err)
		}
	}
	r := s.Close()
	if r.ExitCode != 0 {
		t.Errorf("assay exited %d\n%s", r.ExitCode, strings.Join(r.Stderr, "\n"))
	}

	// The refusals are events: the file (its path under Landlock, from
	// the traced opens; its inode under BPF LSM), the operation and the
	// deciding rule. (The server opens the directory before it writes a
	// new file: the refusal of the write is the refusal of that open.)
	type want struct {
		path, tool, arg string
		rule            uint32
		op              string // "": open
		// byRule: under BPF LSM, match the event's rule_path (the rule's
		// own path), not the file's inode (a refused rename names the
		// inode of the file moved, not of the one it would replace).
		byRule bool
	}
	wants := []want{
		{path: filepath.Join(outside, "secret.txt"), tool: "read_text_file", arg: filepath.Join(outside, "secret.txt"), rule: V2DefaultID},
		{path: outside, tool: "write_file", arg: filepath.Join(outside, "new.txt"), rule: V2DefaultID},
	}
	if lsm {
		// The server writes an existing file by renaming a temporary file
		// of the same directory over it: that rename is refused.
		wants = append(wants,
			want{path: j(".env"), tool: "read_text_file", arg: j(".env"), rule: V2EnvRuleID},
			want{path: j(".env"), tool: "write_file", arg: j(".env"), rule: V2EnvRuleID, op: "rename", byRule: true})
	}
	matches := func(e Event, w want) bool {
		op := w.op
		if op == "" {
			op = "open"
		}
		if e.Kind != "file" || e.Verdict != "blocked" || e.RuleID != w.rule || e.Op != op {
			return false
		}
		if !lsm {
			return e.Path == w.path
		}
		if w.byRule {
			return e.RulePath == w.path
		}
		var st syscall.Stat_t
		return e.Ino != nil && syscall.Stat(w.path, &st) == nil && *e.Ino == st.Ino
	}
	var lines []string
	for _, e := range r.Events {
		lines = append(lines, e.Line)
	}
	for _, w := range wants {
		found := false
		for _, e := range r.Events {
			if matches(e, w) {
				found = true
				if c.MCP {
					CheckMCPContext(t, e, CallIDs(t, r, w.tool, "path", w.arg), w.tool)
				}
			}
		}
		if !found {
			t.Errorf("no blocked file event for %s (rule %d) among:\n%s", w.path, w.rule, strings.Join(lines, "\n"))
		}
	}
	if lsm {
		// Nothing else was refused: not the server's start (node, its
		// code, the runtime baseline), not the allowed tools.
		for _, e := range r.Events {
			if e.Kind != "file" || e.Verdict != "blocked" {
				continue
			}
			expected := false
			for _, w := range wants {
				expected = expected || matches(e, w)
			}
			if !expected {
				t.Errorf("an unexpected refusal (a gap in the runtime baseline or the policy?): %s%s", e.Line, inodePath(e))
			}
		}
	}
	if got := r.Report.Mechanism(V2RootRuleID); c.Mechanism != "" && got != c.Mechanism || got != MechLandlock && got != MechBPFLSM {
		t.Errorf("rule %d enforced by %q, want %q\n%s", V2RootRuleID, got, c.Mechanism, strings.Join(r.Stderr, "\n"))
	}
}

// NodeFilesystemCode returns the install directory (holding node_modules)
// of the server whose entry point is script, as NodeFilesystemServer
// returns it.
func NodeFilesystemCode(script string) string {
	code := filepath.Dir(script)
	for filepath.Base(code) != "node_modules" && filepath.Dir(code) != code {
		code = filepath.Dir(code)
	}
	return filepath.Dir(code)
}

// inodePath names the file a BPF LSM event's (dev, ino) is, if a walk of
// the filesystem tree (not /proc, /sys) finds it: for failure messages.
func inodePath(e Event) string {
	if e.Dev == nil || e.Ino == nil {
		return ""
	}
	dev, ino := *e.Dev, *e.Ino
	found := ""
	filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		if p == "/proc" || p == "/sys" {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && st.Ino == ino && unix.Major(st.Dev)<<20|unix.Minor(st.Dev) == dev {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return ""
	}
	return " (" + found + ")"
}
