package mcptest

import (
	"encoding/json"
	"fmt"
	"github.com/assaymcp/assay/internal/assaytest"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"golang.org/x/sys/unix"
)

// Mechanisms of the enforcement report, as `assay run` names them.
const (
	MechBPFLSM    = "bpf-lsm"
	MechLandlock  = "landlock"
	MechCgroupBPF = "cgroup-bpf"
)

// Rule ids of the scenarios' policies.
const (
	SecretRuleID  = 7  // files.deny: ROOT/secret.txt (an exact file)
	PrivateRuleID = 8  // files.deny: ROOT/private/ (a directory)
	PortRuleID    = 40 // network.deny_ports: the denied listener's port
	CIDRRuleID    = 41 // network.deny_cidrs: 127.0.0.3/32
)

// DeniedCIDRAddr is the loopback address the fetch scenario's CIDR rule denies.
const DeniedCIDRAddr = "127.0.0.3"

// Contents of the files scenario's tree.
const (
	notesContent  = "allowed notes: nothing secret here\n"
	otherContent  = "another allowed file\n"
	secretContent = "TOP SECRET: the launch codes\n"
	keyContent    = "-----BEGIN PRIVATE KEY----- not really\n"
)

// FilesConfig is one run of FilesScenario.
type FilesConfig struct {
	Assay string
	// Server returns the command line of an MCP filesystem server that
	// serves root (read_text_file or read_file taking a path).
	Server func(root string) []string
	Output string // JSON (default) or Text
	// Mechanism the file rules must be enforced with (MechBPFLSM or
	// MechLandlock); "" accepts either, as reported, with its consequences.
	Mechanism string
	// Comm, if set, is the command name blocked-file events must carry.
	Comm string
	// Trace runs assay with --trace: with JSON output, each denied read
	// must then show as an observed open of that path failing with the
	// mechanism's errno (the only trace of a Landlock denial), and the
	// allowed reads as successful opens.
	Trace bool
	Env   []string
	// MCP runs assay with --mcp: each blocked file event must then name
	// the tools/call that caused it (tool and request id), and nothing else.
	MCP bool
}

// FilesScenario runs a filesystem MCP server under `assay run` with a policy
// denying ROOT/secret.txt (rule 7) and ROOT/private/ (rule 8), and checks,
// through a real MCP session: initialize and tools/list work; reading an
// allowed file returns its content; reading a denied file is a tool error
// with the kernel's errno (EPERM from BPF LSM, EACCES from Landlock) and
// none of the content; the server keeps serving afterwards; with BPF LSM
// each denied read gives exactly one blocked file event naming its rule,
// the file's (dev, ino) and the command's cgroup, and with Landlock none;
// the report names the mechanism for both rules; the summary accounts for
// every event; every byte on the server's stdout was JSON-RPC; assay exits
// 0 when the client closes the session.
func FilesScenario(t *testing.T, c FilesConfig) {
	root := t.TempDir()
	// The server runs as an unprivileged user: it must be able to read the
	// tree it serves.
	assaytest.PublicDir(t, root)
	notes := filepath.Join(root, "notes.txt")
	other := filepath.Join(root, "sub", "other.txt")
	secret := filepath.Join(root, "secret.txt")
	private := filepath.Join(root, "private")
	key := filepath.Join(private, "id_ed25519")
	for p, content := range map[string]string{notes: notesContent, other: otherContent, secret: secretContent, key: keyContent} {
		writeFile(t, p, content)
	}
	policy := writePolicy(t, fmt.Sprintf(`version: 1
files:
  deny:
    - {path: %s, id: %d}
    - {path: %s/, id: %d}
`, secret, SecretRuleID, private, PrivateRuleID))

	var flags []string
	if c.Trace {
		flags = append(flags, "--trace")
	}
	if c.MCP {
		flags = append(flags, "--mcp")
	}
	s := Start(t, Options{Assay: c.Assay, Policy: policy, Output: c.Output, Flags: flags, Server: c.Server(root), Roots: []string{root}, Env: c.Env})

	// tools/list: the current reference server calls it read_text_file
	// (read_file is its deprecated alias); ours, read_file.
	tools := s.ToolNames()
	tool := ""
	for _, name := range []string{"read_text_file", testserver.ReadFileTool} {
		if slices.Contains(tools, name) {
			tool = name
			break
		}
	}
	if tool == "" {
		t.Fatalf("tools/list has neither read_text_file nor read_file: %q", tools)
	}
	read := func(p string) (string, bool) {
		res := s.Call(tool, map[string]any{"path": p})
		return TextOf(res), res.IsError
	}
	wantContent := func(what, p, want string) {
		t.Helper()
		got, isErr := read(p)
		if isErr || got != want {
			t.Errorf("%s %s: isError=%v text=%q, want the content %q\nassay stderr:\n%s", tool, what, isErr, got, want, s.Stderr())
		}
	}
	var denials []string
	wantDenied := func(what, p, content string) {
		t.Helper()
		got, isErr := read(p)
		denials = append(denials, got)
		if !isErr {
			t.Errorf("%s %s: not a tool error: %q", tool, what, got)
		}
		if strings.Contains(got, strings.TrimSpace(content)) {
			t.Errorf("%s %s: the denied content leaked: %q", tool, what, got)
		}
	}

	wantContent("an allowed file", notes, notesContent)
	wantDenied("a file denied by an exact rule", secret, secretContent)
	wantContent("an allowed file after a denied read", notes, notesContent)
	wantDenied("a file in a denied directory", key, keyContent)
	wantContent("another allowed file", other, otherContent)

	r := s.Close()
	checkEnded(t, r, "initialize", "notifications/initialized", "tools/list", "tools/call")

	// The report: text lines on stderr, or (--output json, where every
	// line assay writes is JSON) the {"type":"enforcement"} line.
	mechOf := func(id uint32) string {
		if c.Output == Text {
			return r.ReportText[id]
		}
		return r.Report.Mechanism(id)
	}
	mech := c.Mechanism
	if mech == "" {
		mech = mechOf(SecretRuleID)
	}
	if mech != MechBPFLSM && mech != MechLandlock {
		t.Fatalf("file rules enforced by %q, want %s or %s; stderr:\n%s", mech, MechBPFLSM, MechLandlock, strings.Join(r.Stderr, "\n"))
	}
	t.Logf("file rules enforced by %s", mech)
	for _, id := range []uint32{SecretRuleID, PrivateRuleID} {
		if got := mechOf(id); got != mech {
			t.Errorf("%s report: rule %d enforced by %q, want %q: %+v", c.Output, id, got, mech, r.Report)
		}
		if c.Output != Text && len(r.ReportText) != 0 {
			t.Errorf("--output json: text report lines on stderr: %v", r.ReportText)
		}
	}
	if c.Output != Text && r.Report.Files != mech {
		t.Errorf("JSON report: files_mechanism %q, want %q", r.Report.Files, mech)
	}

	// The tool error carries the errno the kernel gave the server's open.
	errnoText := map[string]string{MechBPFLSM: unix.EPERM.Error(), MechLandlock: unix.EACCES.Error()}[mech]
	for i, d := range denials {
		if !strings.Contains(strings.ToLower(d), errnoText) {
			t.Errorf("denied read %d: tool error %q does not say %q", i+1, d, errnoText)
		}
	}

	var files, traces []Event
	for _, e := range r.Events {
		switch {
		case e.Kind == "file":
			files = append(files, e)
		case c.Trace && (e.Kind == "open" || e.Kind == "exec") && e.Verdict == "observed":
			traces = append(traces, e)
		default:
			t.Errorf("unexpected event: %s", e.Line)
		}
	}
	t.Logf("events (and %d trace events):\n%s", len(traces), eventLines(files))
	if c.Trace && c.Output != Text {
		errno := map[string]string{MechBPFLSM: "EPERM", MechLandlock: "EACCES"}[mech]
		for _, w := range []struct{ path, result string }{{notes, "ok"}, {other, "ok"}, {secret, errno}, {key, errno}} {
			found := false
			for _, e := range traces {
				if e.Kind == "open" && e.Path == w.path {
					found = true
					if e.Result != w.result {
						t.Errorf("trace: %s, want result %s", e.Line, w.result)
					}
				}
			}
			if !found {
				t.Errorf("trace: no open of %s among %d trace events", w.path, len(traces))
			}
		}
		if t.Failed() {
			// Emitted but lost on the way, or never emitted: the summary
			// tells which.
			t.Logf("summary tracepoint path %+v (received %d, ring buffer pressure %v); trace events:\n%s",
				r.Summary.Tracepoint, r.Summary.Received, r.Pressure, eventLines(traces))
		}
	}
	switch mech {
	case MechLandlock:
		// Landlock refuses without telling assay: no event.
		if len(files) != 0 {
			t.Errorf("Landlock enforcement, yet %d file events:\n%s", len(files), eventLines(files))
		}
	case MechBPFLSM:
		if len(files) != 2 {
			t.Fatalf("%d file events, want 2 (one per denied read):\n%s", len(files), eventLines(files))
		}
		want := []struct {
			id       uint32
			file     string
			rulePath string
		}{{SecretRuleID, secret, secret}, {PrivateRuleID, key, private}}
		for i, w := range want {
			e := files[i]
			dev, ino := kernelIdentity(t, w.file)
			ok := e.Verdict == "blocked" && e.RuleID == w.id && e.Op == "open" &&
				e.Dev != nil && *e.Dev == dev && e.Ino != nil && *e.Ino == ino
			if c.Output != Text {
				ok = ok && e.RulePath == w.rulePath && e.CgroupID == r.Report.CgroupID && e.CgroupID != 0
			}
			if c.Comm != "" {
				ok = ok && e.Comm == c.Comm
			}
			if !ok {
				t.Errorf("event %d: %s\nwant BLOCKED FILE rule_id=%d op=open dev=%d ino=%d%s", i+1, e.Line, w.id, dev, ino,
					alsoWant(c.Output, c.Comm, r.Report.CgroupID, "rule_path="+w.rulePath))
			}
		}
	}
	if c.MCP && mech == MechBPFLSM && len(files) == 2 {
		for i, p := range []string{secret, key} {
			CheckMCPContext(t, files[i], CallIDs(t, r, tool, "path", p), tool)
		}
	}
	checkSummary(t, r, uint64(len(files)), 0)
}

// FetchConfig is one run of FetchScenario.
type FetchConfig struct {
	Assay  string
	Server []string // the command line of an MCP server with a fetch tool (url)
	Output string   // JSON (default) or Text
	Comm   string   // if set, the command name connect events must carry
	Env    []string
	// MCP runs assay with --mcp: each blocked connect event must then
	// name the tools/call that caused it (tool and request id), and nothing
	// else.
	MCP bool
}

// FetchScenario runs a fetch MCP server under `assay run` with a policy
// denying one loopback listener's port (rule 40) and 127.0.0.3/32 (rule
// 41), and checks through a real MCP session: fetching from the allowed
// listener returns its body; fetching from the denied port and from the
// denied address are tool errors with EPERM, and those listeners never see
// a connection; the server keeps serving (allowed fetches after each
// denied one succeed); each denied fetch gives exactly one blocked connect
// event naming its rule and destination; the summary accounts for them;
// every byte on the server's stdout was JSON-RPC; assay exits 0.
func FetchScenario(t *testing.T, c FetchConfig) {
	allowed := serveHTTP(t, "127.0.0.1:0", "hello from the allowed listener")
	var denied, deniedAddr *httpListener
	for range 20 {
		d := serveHTTP(t, "127.0.0.1:0", "the denied port answered")
		if d.port != allowed.port {
			denied = d
			break
		}
	}
	for range 20 {
		d := serveHTTP(t, DeniedCIDRAddr+":0", "the denied address answered")
		if d.port != denied.port {
			deniedAddr = d
			break
		}
	}
	if denied == nil || deniedAddr == nil {
		t.Fatal("no distinct loopback ports")
	}
	policy := writePolicy(t, fmt.Sprintf(`version: 1
network:
  deny_ports: [{port: %d, id: %d}]
  deny_cidrs: [{cidr: %s/32, id: %d}]
`, denied.port, PortRuleID, DeniedCIDRAddr, CIDRRuleID))

	var flags []string
	if c.MCP {
		flags = append(flags, "--mcp")
	}
	s := Start(t, Options{Assay: c.Assay, Policy: policy, Output: c.Output, Server: c.Server, Env: c.Env, Flags: flags})
	if tools := s.ToolNames(); !slices.Contains(tools, testserver.FetchTool) {
		t.Fatalf("tools/list has no %s: %q", testserver.FetchTool, tools)
	}
	fetch := func(l *httpListener) (string, bool) {
		res := s.Call(testserver.FetchTool, map[string]any{"url": l.url})
		return TextOf(res), res.IsError
	}
	wantBody := func(what string) {
		t.Helper()
		if got, isErr := fetch(allowed); isErr || got != allowed.body {
			t.Errorf("fetch %s (%s): isError=%v text=%q, want %q\nassay stderr:\n%s", what, allowed.url, isErr, got, allowed.body, s.Stderr())
		}
	}
	wantRefused := func(what string, l *httpListener) {
		t.Helper()
		got, isErr := fetch(l)
		if !isErr || !strings.Contains(got, "connect: "+unix.EPERM.Error()) || strings.Contains(got, l.body) {
			t.Errorf("fetch %s (%s): isError=%v text=%q, want a tool error saying connect: %v", what, l.url, isErr, got, unix.EPERM)
		}
	}

	wantBody("from the allowed listener")
	wantRefused("from a denied port", denied)
	wantBody("from the allowed listener after a refused one")
	wantRefused("from a denied address", deniedAddr)
	wantBody("again")

	r := s.Close()
	checkEnded(t, r, "initialize", "notifications/initialized", "tools/list", "tools/call")
	if got := allowed.hits.Load(); got != 3 {
		t.Errorf("the allowed listener served %d requests, want 3", got)
	}
	if got := denied.hits.Load() + deniedAddr.hits.Load(); got != 0 {
		t.Errorf("the denied listeners served %d requests, want 0", got)
	}
	for _, id := range []uint32{PortRuleID, CIDRRuleID} {
		got := r.ReportText[id]
		if c.Output != Text {
			got = r.Report.Mechanism(id)
		}
		if got != MechCgroupBPF {
			t.Errorf("%s report: rule %d enforced by %q, want %s", c.Output, id, got, MechCgroupBPF)
		}
	}

	t.Logf("events:\n%s", eventLines(r.Events))
	want := []struct {
		id   uint32
		addr string
		port uint16
	}{{PortRuleID, "127.0.0.1", denied.port}, {CIDRRuleID, DeniedCIDRAddr, deniedAddr.port}}
	if len(r.Events) != len(want) {
		t.Fatalf("%d events, want %d (one per refused fetch):\n%s", len(r.Events), len(want), eventLines(r.Events))
	}
	for i, w := range want {
		e := r.Events[i]
		ok := e.Kind == "connect" && e.Verdict == "blocked" && e.RuleID == w.id && e.DstAddr == w.addr &&
			e.DstPort == w.port && e.Protocol == "tcp" && e.Family == "inet"
		if c.Output != Text {
			ok = ok && e.CgroupID == r.Report.CgroupID && e.CgroupID != 0
		}
		if c.Comm != "" {
			ok = ok && e.Comm == c.Comm
		}
		if !ok {
			t.Errorf("event %d: %s\nwant BLOCKED CONNECT rule_id=%d dst=%s:%d proto=tcp family=inet%s", i+1, e.Line, w.id, w.addr, w.port,
				alsoWant(c.Output, c.Comm, r.Report.CgroupID))
		}
	}
	if c.MCP {
		for i, l := range []*httpListener{denied, deniedAddr} {
			CheckMCPContext(t, r.Events[i], CallIDs(t, r, testserver.FetchTool, "url", l.url), testserver.FetchTool)
		}
	}
	checkSummary(t, r, 0, uint64(len(want)))
}

// checkEnded checks how a session ended: assay exited 0 by itself once the
// client closed the server's stdin; both directions of the stream were
// clean JSON-RPC with every request answered; the client sent each of
// methods; the events output was well formed.
func checkEnded(t *testing.T, r Result, methods ...string) {
	t.Helper()
	if r.ExitCode != 0 || len(r.Signaled) != 0 {
		t.Errorf("assay exited %d (signals sent: %v), want 0 after the client closed stdin; stderr:\n%s", r.ExitCode, r.Signaled, strings.Join(r.Stderr, "\n"))
	}
	if r.StreamErr != nil {
		t.Errorf("the stdio stream is not clean JSON-RPC: %v", r.StreamErr)
	}
	sent, err := ParseStream(r.Stdin)
	if err != nil {
		t.Fatalf("client stream: %v", err)
	}
	got := map[string]bool{}
	for _, m := range sent {
		got[m.Method] = true
	}
	for _, m := range methods {
		if !got[m] {
			t.Errorf("the client never sent %s", m)
		}
	}
	for _, p := range r.Problems {
		t.Errorf("events output: %s", p)
	}
	for _, line := range r.Stderr {
		// --output json: assay's messages are JSON lines too.
		msg := line
		var m struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Type == "message" {
			msg = "assay: " + m.Message
		}
		if strings.HasPrefix(msg, "assay: stopping") || strings.HasPrefix(msg, "assay: writing events failed") {
			t.Errorf("assay stderr: %s", line)
		}
	}
}

// checkSummary checks the exit summary: present, lsm and socket emitted
// counts as given (and as many events printed), nothing dropped or
// malformed.
func checkSummary(t *testing.T, r Result, lsm, socket uint64) {
	t.Helper()
	if !r.HasSummary {
		t.Errorf("no exit summary; stderr:\n%s", strings.Join(r.Stderr, "\n"))
		return
	}
	s := r.Summary
	if s.LSM.Emitted != lsm || s.Socket.Emitted != socket || s.LSM.Dropped+s.Socket.Dropped+s.Tracepoint.Dropped != 0 || s.Malformed != 0 || r.Pressure {
		t.Errorf("summary %+v pressure=%v, want lsm emitted=%d socket emitted=%d, nothing dropped or malformed", s, r.Pressure, lsm, socket)
	}
}

// alsoWant renders the rest of what an event must carry: comm if given;
// with JSON output, the report's cgroup id and the JSON-only fields.
func alsoWant(output, comm string, cgroupID uint64, jsonOnly ...string) string {
	var b strings.Builder
	if comm != "" {
		fmt.Fprintf(&b, " comm=%s", comm)
	}
	if output != Text {
		fmt.Fprintf(&b, " cgroup_id=%d (the report's)", cgroupID)
		for _, f := range jsonOnly {
			b.WriteString(" " + f)
		}
	}
	return b.String()
}

func eventLines(es []Event) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Line + "\n")
	}
	return b.String()
}

// kernelIdentity is what the kernel reports of path: (s_dev in the kernel's
// major<<20|minor encoding, i_ino).
func kernelIdentity(t *testing.T, path string) (uint32, uint64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return unix.Major(st.Dev)<<20 | unix.Minor(st.Dev), st.Ino
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

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// httpListener is a loopback HTTP server answering every GET with body.
type httpListener struct {
	url  string
	port uint16
	body string
	hits atomic.Int64
}

func serveHTTP(t *testing.T, addr, body string) *httpListener {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	l := &httpListener{body: body, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	l.url = "http://" + ln.Addr().String() + "/"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		l.hits.Add(1)
		fmt.Fprint(w, body)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l
}
