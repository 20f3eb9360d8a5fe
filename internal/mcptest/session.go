package mcptest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/events/schema"
	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Timeouts of a session: bounds on waits, scaled like assaytest's
// (ASSAY_TIMEOUT_SCALE, see [assaytest.Scaled]).
var (
	ConnectTimeout = assaytest.Scaled(60 * time.Second) // assay setup + the server's start + initialize
	CallTimeout    = assaytest.Scaled(30 * time.Second) // one request
	// ExitTimeout: after the client closed assay's stdin, how long assay
	// has to exit by itself (the server's exit, the cgroup's removal, the
	// detach of every program, the final drain and the summary) before it
	// gets SIGTERM, and as long again before SIGKILL. The detach of each
	// BPF LSM hook waits for the kernel to unregister its trampoline (RCU
	// Tasks grace periods): measured in the arm64 guest (TCG, host load
	// 10-15), 1-3 s per hook, ~30 s for the 18 hooks, 40-46 s for the
	// whole exit, where the fixed 10 s + 10 s killed assay mid-detach. A
	// SIGKILL loses the summary and every event still in the ring buffers.
	ExitTimeout = assaytest.Scaled(30 * time.Second)
)

// ProtocolVersion is the MCP version the client asks for: the newest one
// with the initialize handshake, which every stdio server speaks (the SDK's
// default would first try the stateless server/discover).
const ProtocolVersion = "2025-11-25"

// Output formats of a session's `assay run`.
const (
	// JSON: --output json --events FILE; the session reads FILE after exit.
	JSON = "json"
	// Text: the default text output, events and summary on stderr among the
	// server's own stderr.
	Text = "text"
)

// Options describe one MCP session with a server under `assay run`.
type Options struct {
	Assay  string   // the assay binary
	Policy string   // --policy FILE
	Output string   // JSON or Text (default JSON)
	Flags  []string // more `assay run` flags, before "--"
	Server []string // the server's command line
	Roots  []string // directories the client offers as MCP roots (roots/list)
	Env    []string // the environment of assay (nil: this process's)
	// Slow multiplies the session's hang guards (ConnectTimeout,
	// CallTimeout, ExitTimeout): for a server that is slow to start where it runs (Node.js
	// in the TCG guest). 0 means 1.
	Slow int
	// Learn, when set, runs `assay learn --out LEARN FLAGS... -- SERVER...`
	// instead (Policy and Output are not used; the output is Text, and
	// learn writes no events).
	Learn string
}

// Session is an MCP client session with a server started by `assay run`:
// the SDK's ClientSession, initialized, plus what is needed to end it and
// inspect what happened.
type Session struct {
	*mcp.ClientSession
	t      testing.TB
	o      Options
	cmd    *exec.Cmd
	tr     *CommandTransport
	stderr *syncBuffer
	events string // the --events file (JSON)

	closeOnce sync.Once
	result    Result
}

// Start runs `assay run --policy POLICY [FORMAT FLAGS] FLAGS... -- SERVER...`
// with the SDK's MCP client on its stdin/stdout, and returns once the
// session is initialized (initialize, notifications/initialized). It fails
// the test, with assay's stderr, if that does not happen within
// ConnectTimeout. A session the test does not Close is closed when the test
// ends.
func Start(t testing.TB, o Options) *Session {
	t.Helper()
	if o.Output == "" {
		o.Output = JSON
	}
	if o.Learn != "" {
		o.Output = Text
	}
	s := &Session{t: t, o: o, stderr: &syncBuffer{}}
	args := []string{"run", "--policy", o.Policy}
	if o.Learn != "" {
		args = []string{"learn", "--out", o.Learn}
	}
	switch o.Output {
	case JSON:
		s.events = filepath.Join(t.TempDir(), "events.jsonl")
		args = append(args, "--output", "json", "--events", s.events)
	case Text:
	default:
		t.Fatalf("mcptest: unknown output %q", o.Output)
	}
	args = append(args, o.Flags...)
	args = append(args, "--")
	args = append(args, o.Server...)
	s.cmd = exec.Command(o.Assay, args...)
	s.cmd.Stderr = s.stderr
	s.cmd.Env = o.Env
	s.tr = &CommandTransport{Command: s.cmd, TerminateDuration: s.slow(ExitTimeout)}

	client := mcp.NewClient(&mcp.Implementation{Name: "assay-mcptest-client", Version: testserver.Version}, nil)
	for _, r := range o.Roots {
		// The npm filesystem server takes its directories from roots; the
		// feature is deprecated but functional for at least a year.
		//lint:ignore SA1019 the servers under test still use MCP roots
		client.AddRoots(&mcp.Root{URI: (&url.URL{Scheme: "file", Path: r}).String(), Name: filepath.Base(r)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.slow(ConnectTimeout))
	defer cancel()
	cs, err := client.Connect(ctx, s.tr, &mcp.ClientSessionOptions{ProtocolVersion: ProtocolVersion})
	if err != nil {
		s.tr.abort()
		t.Fatalf("MCP session with %q under assay: %v\nassay stderr:\n%s\nstdout so far: %s", o.Server, err, s.stderr.String(), quote(s.tr.Stdout()))
	}
	s.ClientSession = cs
	t.Cleanup(func() { s.Close() })
	return s
}

// slow scales a hang guard by Options.Slow.
func (s *Session) slow(d time.Duration) time.Duration {
	return d * time.Duration(max(s.o.Slow, 1))
}

// Call calls a tool and returns its result; a protocol-level failure (as
// opposed to a tool error, which is a result with IsError) fails the test.
func (s *Session) Call(tool string, args map[string]any) *mcp.CallToolResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.slow(CallTimeout))
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		s.t.Fatalf("tools/call %s %v: %v\nassay stderr:\n%s", tool, args, err, s.stderr.String())
	}
	return res
}

// ToolNames lists the server's tools (tools/list, every page).
func (s *Session) ToolNames() []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	var names []string
	for tool, err := range s.Tools(ctx, nil) {
		if err != nil {
			s.t.Fatalf("tools/list: %v\nassay stderr:\n%s", err, s.stderr.String())
		}
		names = append(names, tool.Name)
	}
	return names
}

// Stderr is assay's stderr so far (the report, the server's stderr and, with
// Text output, the events).
func (s *Session) Stderr() string { return s.stderr.String() }

// TextOf joins the text content of a tool result.
func TextOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// Result is how a session ended and what assay reported.
type Result struct {
	ExitCode int      // assay's exit status; -1 when killed by a signal
	Signaled []string // signals the client had to send (none when the server exits on EOF)

	Stdout []byte   // every byte assay's stdout carried (server -> client)
	Stdin  []byte   // every byte the client sent
	Stderr []string // assay's stderr, lines

	// StreamErr is CheckExchange(Stdin, Stdout): nil when both directions
	// were clean JSON-RPC and every request was answered exactly once.
	StreamErr error

	// Report is the enforcement report: from the {"type":"enforcement"}
	// line with JSON output, else from stderr. ReportText is the
	// mechanism per rule id in the stderr report (both outputs).
	Report     Report
	HasReport  bool
	ReportText map[uint32]string

	// Events are the events: decoded JSON with JSON output; with Text
	// output, parsed from the stderr lines (Line holds the line).
	Events []Event

	Summary    events.Summary
	HasSummary bool
	Pressure   bool

	// HasStart: the events file began with assay's start line; Messages
	// are assay's messages in it (JSON output).
	HasStart bool
	Messages []string

	// Problems are lines of the events file that are none of the above.
	Problems []string
}

// Mechanism is the mechanism the enforcement report gives rule id: from the
// JSON report with --output json (where no text report is written), else
// from the stderr report.
func (r Result) Mechanism(id uint32) string {
	if r.HasReport {
		return r.Report.Mechanism(id)
	}
	return r.ReportText[id]
}

// Report mirrors the {"type":"enforcement"} line of `assay run --output json`.
type Report struct {
	Schema   int          `json:"schema"`
	Type     string       `json:"type"`
	Time     string       `json:"time"`
	Cgroup   string       `json:"cgroup"`
	CgroupID uint64       `json:"cgroup_id"`
	Audit    bool         `json:"audit"`
	Files    string       `json:"files_mechanism"`
	Rules    []ReportRule `json:"rules"`
	Notes    []string     `json:"notes"`
	// How the server is contained (assay run's report).
	User         string   `json:"user"`
	Contained    []string `json:"contained"`
	NotContained []string `json:"not_contained"`
}

// ReportRule is one rule of the enforcement report.
type ReportRule struct {
	ID        uint32 `json:"id"`
	Kind      string `json:"kind"`
	Rule      string `json:"rule"`
	Mechanism string `json:"mechanism"`
	Reason    string `json:"reason"`
}

// Mechanism is the mechanism the report gives rule id ("" when absent).
func (r Report) Mechanism(id uint32) string {
	for _, rr := range r.Rules {
		if rr.ID == id {
			return rr.Mechanism
		}
	}
	return ""
}

// Event is one event: the JSON form's fields, and Line, the line as printed.
type Event struct {
	events.JSONEvent
	Line string
}

// Close ends the session the stdio way (close the server's stdin, wait;
// SIGTERM, SIGKILL if it lingers), waits for assay to exit and returns what
// happened. Later calls return the same Result.
func (s *Session) Close() Result {
	s.t.Helper()
	s.closeOnce.Do(func() {
		if err := s.ClientSession.Close(); err != nil {
			s.t.Errorf("closing the MCP session: %v", err)
		}
		if err := s.tr.ReadErr(); err != nil {
			s.t.Errorf("reading assay's stdout: %v", err)
		}
		s.result = s.collect()
	})
	return s.result
}

func (s *Session) collect() Result {
	r := Result{
		ExitCode: s.cmd.ProcessState.ExitCode(),
		Signaled: s.tr.Signaled(),
		Stdout:   s.tr.Stdout(),
		Stdin:    s.tr.Stdin(),
		Stderr:   unmarked(lines(s.stderr.String())),
	}
	r.StreamErr = CheckExchange(r.Stdin, r.Stdout)
	for _, l := range r.Stderr {
		assaytest.CheckSchema(s.t, l) // --output json: assay's stderr lines too
	}
	r.ReportText = textReport(r.Stderr)
	if s.o.Output == JSON {
		b, err := os.ReadFile(s.events)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("--events file: %v", err))
		}
		parseJSONEvents(&r, unmarked(lines(string(b))))
	} else {
		parseTextEvents(&r, r.Stderr)
	}
	return r
}

type jsonSummary struct {
	Paths     map[string]events.PathCounts `json:"paths"`
	Received  uint64                       `json:"received"`
	Malformed uint64                       `json:"malformed"`
	Pressure  bool                         `json:"ring_buffer_pressure"`
}

func parseJSONEvents(r *Result, ls []string) {
	for _, line := range ls {
		var head struct {
			Schema int    `json:"schema"`
			Type   string `json:"type"`
			Time   string `json:"time"`
		}
		if err := json.Unmarshal([]byte(line), &head); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("not JSON (%v): %q", err, line))
			continue
		}
		// Every line must follow the published schema
		// (internal/events/schema/events.schema.json).
		if err := schema.Validate([]byte(line)); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("does not follow the event schema: %v", err))
			continue
		}
		if _, err := time.Parse(events.JSONTime, head.Time); err != nil || !strings.HasSuffix(head.Time, "Z") || head.Schema != events.SchemaVersion {
			r.Problems = append(r.Problems, fmt.Sprintf("no RFC 3339 UTC time with nanoseconds or not schema %d: %s", events.SchemaVersion, line))
		}
		var err error
		switch head.Type {
		case "start": // the first line of each run appended to the file
			if r.HasStart || r.HasReport || len(r.Events) > 0 {
				err = fmt.Errorf("a start line after the run started")
			}
			r.HasStart = true
		case "message": // assay's messages, as JSON with --output json
			var m struct {
				Message string `json:"message"`
			}
			if err = json.Unmarshal([]byte(line), &m); err == nil {
				r.Messages = append(r.Messages, m.Message)
			}
		case "enforcement":
			dup := r.HasReport
			r.HasReport = true
			if err = strictUnmarshal(line, &r.Report); err == nil && dup {
				err = fmt.Errorf("a second enforcement report")
			}
		case "event":
			var e Event
			err = strictUnmarshal(line, &e.JSONEvent)
			e.Line = line
			r.Events = append(r.Events, e)
		case "summary":
			var js jsonSummary
			if err = json.Unmarshal([]byte(line), &js); err == nil {
				if r.HasSummary {
					err = fmt.Errorf("a second summary")
				}
				r.HasSummary = true
				r.Summary = events.Summary{
					Tracepoint: js.Paths["tracepoint"], LSM: js.Paths["lsm"], Socket: js.Paths["socket"],
					Received: js.Received, Malformed: js.Malformed,
				}
				r.Pressure = js.Pressure
			}
		default:
			err = fmt.Errorf("unknown type %q", head.Type)
		}
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%v: %s", err, line))
		}
	}
}

func strictUnmarshal(line string, v any) error {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// 2026-11-29T17:20:42.123456Z [PID 4242] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet comm=curl tid=4242
var textEventRE = regexp.MustCompile(`^(\S+) \[PID ([0-9]+)\] \S+ (BLOCKED|AUDIT) (CONNECT|SENDMSG|FILE|TOOL): (.*)$`)
var textSummaryRE = regexp.MustCompile(`^(Tracepoint|LSM|Socket) ringbuf: emitted=([0-9]+) dropped=([0-9]+)( suppressed=[0-9]+)?$`)

func parseTextEvents(r *Result, stderr []string) {
	found := 0
	for _, line := range stderr {
		if m := textEventRE.FindStringSubmatch(line); m != nil {
			e := Event{Line: line}
			e.Type = "event"
			if ts, err := time.Parse(events.TextTime, m[1]); err == nil && strings.HasSuffix(m[1], "Z") {
				e.Time = ts.Format(events.JSONTime)
			} else {
				r.Problems = append(r.Problems, fmt.Sprintf("event line without an RFC 3339 UTC time with microseconds: %s", line))
			}
			e.PID = uint32(atoi(m[2]))
			e.Verdict = map[string]string{"BLOCKED": "blocked", "AUDIT": "audit"}[m[3]]
			e.Kind = strings.ToLower(m[4])
			for _, f := range strings.Fields(m[5]) {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "rule_id":
					e.RuleID = uint32(atoi(v))
				case "cgroup":
					e.CgroupID = uint64(atoi(v))
				case "comm":
					e.Comm = v
				case "tid":
					e.TID = uint32(atoi(v))
				case "proto":
					e.Protocol = v
				case "family":
					e.Family = v
				case "op":
					e.Op = v
				case "dst":
					if i := strings.LastIndexByte(v, ':'); i > 0 {
						e.DstAddr = strings.Trim(v[:i], "[]")
						e.DstPort = uint16(atoi(v[i+1:]))
					}
				case "dev":
					d := uint32(atoi(v))
					e.Dev = &d
				case "ino":
					i := uint64(atoi(v))
					e.Ino = &i
				case "name":
					e.Tool = unquote(v)
				case "tool":
					e.MCP = append(e.MCP, events.MCPCall{Method: "tools/call", Tool: unquote(v)})
				case "mcp_method":
					e.MCP = append(e.MCP, events.MCPCall{Method: unquote(v)})
				case "mcp_id":
					if n := len(e.MCP); n > 0 {
						id, _ := json.Marshal(unquote(v))
						if _, err := strconv.ParseFloat(v, 64); err == nil {
							id = []byte(v)
						}
						e.MCP[n-1].ID = id
					}
				}
			}
			r.Events = append(r.Events, e)
			continue
		}
		if m := textSummaryRE.FindStringSubmatch(line); m != nil {
			c := events.PathCounts{Emitted: uint64(atoi(m[2])), Dropped: uint64(atoi(m[3]))}
			switch m[1] {
			case "Tracepoint":
				r.Summary.Tracepoint = c
			case "LSM":
				r.Summary.LSM = c
			case "Socket":
				r.Summary.Socket = c
			}
			found++
		}
		if strings.HasPrefix(line, events.PressureWarning) {
			r.Pressure = true
		}
	}
	r.HasSummary = found == 3
}

// assay:   rule 7  deny_path  /tmp/x/secret.txt  landlock: fallback, ...
var textRuleRE = regexp.MustCompile(`^assay:   rule ([0-9]+) +(\S+) +(.*?) +(bpf-lsm|landlock|cgroup-bpf|mcp-relay|NOT ENFORCED)\b`)

func textReport(stderr []string) map[uint32]string {
	out := map[uint32]string{}
	for _, line := range stderr {
		if m := textRuleRE.FindStringSubmatch(line); m != nil {
			out[uint32(atoi(m[1]))] = m[4]
		}
	}
	return out
}

// unquote undoes the text output's quoting of a value.
func unquote(v string) string {
	if u, err := strconv.Unquote(v); err == nil {
		return u
	}
	return v
}

func atoi(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// unmarked removes the token assay starts each of its lines with (see
// events.Marker): the parsers below read the lines as rendered.
func unmarked(ls []string) []string {
	for i, l := range ls {
		ls[i], _ = assaytest.Unmark(l)
	}
	return ls
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
