package assaytest

// One-shot runs of the assay binary, and reading what assay prints: the
// per-run token, the JSON schema, timestamps and the summary.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/events/schema"
)

// tokenPrefixRE matches the token assay starts every line of a run with
// (events.Marker); tokenJSONRE the JSON form.
var (
	tokenPrefixRE = regexp.MustCompile(`^\[assay:([a-z2-7]{16})\] `)
	tokenJSONRE   = regexp.MustCompile(`^\{"token":"([a-z2-7]{16})",`)
)

// Unmark removes the token assay puts on every line of a run (see
// events.Marker) and returns the line as it was written, and the token (""
// when the line had none).
func Unmark(line string) (string, string) {
	if m := tokenPrefixRE.FindStringSubmatch(line); m != nil {
		return line[len(m[0]):], m[1]
	}
	if m := tokenJSONRE.FindStringSubmatch(line); m != nil {
		return "{" + line[len(m[0]):], m[1]
	}
	return line, ""
}

func addToken(tokens []string, tok string) []string {
	if tok == "" {
		return tokens
	}
	for _, t := range tokens {
		if t == tok {
			return tokens
		}
	}
	return append(tokens, tok)
}

// assayTypes are the "type"s of the lines assay writes in its NDJSON
// output (events.schema.json); other JSON (a command's own output under
// `assay run`, `status --output json`) is not checked.
var assayTypes = map[string]bool{"event": true, "aggregate": true, "summary": true, "enforcement": true, "message": true, "start": true}

// CheckSchema fails the test when line is one of assay's JSON output lines
// (see assayTypes) and does not follow the published event schema.
func CheckSchema(t testing.TB, line string) {
	t.Helper()
	if !strings.HasPrefix(line, "{") {
		return
	}
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal([]byte(line), &head) != nil || !assayTypes[head.Type] {
		return
	}
	if err := schema.Validate([]byte(line)); err != nil {
		t.Errorf("a line does not follow the event schema: %v", err)
	}
}

// StripTime splits the timestamp off a text event line
// ("2026-11-29T17:20:42.123456Z [PID 4242] ..."), or aggregate line
// ("… [AGGREGATE] …"): it returns the line from "[PID " on and the time, or the line unchanged and ok=false when it does
// not start with an RFC 3339 UTC time with microseconds and an event.
func StripTime(line string) (rest string, ts time.Time, ok bool) {
	i := strings.IndexByte(line, ' ')
	if i < 0 || !(strings.HasPrefix(line[i+1:], "[PID ") || strings.HasPrefix(line[i+1:], events.AggregatePrefix)) {
		return line, time.Time{}, false
	}
	ts, err := time.Parse(events.TextTime, line[:i])
	if err != nil || !strings.HasSuffix(line[:i], "Z") {
		return line, time.Time{}, false
	}
	return line[i+1:], ts, true
}

// untimeLine strips the timestamp off an event line (see StripTime), so
// that tests compare what follows it; untimed reports an event line
// without one.
func untimeLine(line string) (out string, untimed bool) {
	if rest, _, ok := StripTime(line); ok {
		return rest, false
	}
	return line, strings.HasPrefix(line, "[PID ") || strings.HasPrefix(line, events.AggregatePrefix)
}

// untimeLines is untimeLine for every line; it fails the test on an event
// line without a timestamp.
func untimeLines(t testing.TB, lines []string) []string {
	t.Helper()
	for i, l := range lines {
		var untimed bool
		lines[i], untimed = untimeLine(l)
		if untimed {
			t.Errorf("an event line without a timestamp: %q", l)
		}
	}
	return lines
}

// Command returns an unstarted command running the assay binary with args.
func Command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(Binary(t), args...)
}

// Run runs the assay binary with args to completion (at most StopTimeout)
// and returns what it printed.
func Run(t testing.TB, args ...string) Result {
	t.Helper()
	return RunCmd(t, Command(t, args...))
}

// RunCmd runs cmd (from Command, possibly adjusted: Env, Dir, SysProcAttr)
// to completion (at most StopTimeout) and returns what it printed. Its
// Stdout and Stderr are replaced.
func RunCmd(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	for try := 0; ; try++ {
		err := cmd.Start()
		if err == nil {
			break
		}
		// A binary a test has just copied can be briefly "busy": a child
		// forked concurrently by another test holds the copy's write fd
		// until it execs (golang/go#22315). Retry with a fresh Cmd.
		if !errors.Is(err, syscall.ETXTBSY) || try >= 100 {
			t.Fatalf("start %q: %v", cmd.Args, err)
		}
		time.Sleep(10 * time.Millisecond)
		next := exec.Command(cmd.Path, cmd.Args[1:]...)
		next.Env, next.Dir, next.SysProcAttr, next.Stdin = cmd.Env, cmd.Dir, cmd.SysProcAttr, cmd.Stdin
		next.Stdout, next.Stderr = &stdout, &stderr
		cmd = next
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("%q did not exit within %v: killed", cmd.Args, StopTimeout)
	}
	return parseResult(t, untimeLines(t, splitLines(stdout.String())), untimeLines(t, splitLines(stderr.String())), cmd.ProcessState.ExitCode())
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// textSummaryRE matches a text summary line; " suppressed=N" is printed
// only when the rate limit suppressed events on that path.
var textSummaryRE = regexp.MustCompile(`^(Tracepoint|LSM|Socket) ringbuf: emitted=([0-9]+) dropped=([0-9]+)(?: suppressed=([0-9]+))?$`)
var malformedRE = regexp.MustCompile(`^Malformed records: ([0-9]+)$`)
var ruleCountsRE = regexp.MustCompile(`^Rule ([0-9]+): suppressed=([0-9]+) dropped=([0-9]+) `)

// jsonSummary mirrors the --output json summary line.
type jsonSummary struct {
	Type      string                       `json:"type"`
	Paths     map[string]events.PathCounts `json:"paths"`
	Received  uint64                       `json:"received"`
	Malformed uint64                       `json:"malformed"`
	Pressure  bool                         `json:"ring_buffer_pressure"`
	Rules     []events.RuleCounts          `json:"rules"`
	Unagg     uint64                       `json:"unaggregated"`
}

func parseResult(t testing.TB, stdout, stderr []string, exit int) Result {
	t.Helper()
	var tokens []string
	unmarked := 0
	unmarkAll := func(lines []string) []string {
		out := make([]string, len(lines))
		for i, l := range lines {
			var tok string
			out[i], tok = Unmark(l)
			if tok == "" {
				unmarked++
			}
			tokens = addToken(tokens, tok)
		}
		return out
	}
	stdout, stderr = unmarkAll(stdout), unmarkAll(stderr)
	r := Result{
		Tokens: tokens, Unmarked: unmarked,
		Stdout:   append([]string(nil), stdout...),
		Stderr:   append([]string(nil), stderr...),
		ExitCode: exit,
	}
	for _, out := range [][]string{stdout, stderr} {
		for _, line := range out {
			CheckSchema(t, line)
		}
	}
	for _, line := range stdout {
		if strings.HasPrefix(line, "[PID ") {
			r.EventLines = append(r.EventLines, line)
			continue
		}
		if strings.HasPrefix(line, events.AggregatePrefix) {
			r.AggregateLines = append(r.AggregateLines, line)
			continue
		}
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(line), &head); err != nil {
			t.Errorf("assay printed a line that is not JSON: %v\n%s", err, line)
			continue
		}
		switch head.Type {
		case "event":
			var e events.JSONEvent
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Errorf("bad JSON event: %v\n%s", err, line)
				continue
			}
			if _, err := time.Parse(events.JSONTime, e.Time); err != nil || !strings.HasSuffix(e.Time, "Z") || e.Schema != events.SchemaVersion {
				t.Errorf("JSON event without an RFC 3339 UTC time with nanoseconds or schema %d: %s", events.SchemaVersion, line)
			}
			r.EventLines = append(r.EventLines, line)
			r.Events = append(r.Events, e)
		case "aggregate":
			var a events.JSONAggregate
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				t.Errorf("bad JSON aggregate: %v\n%s", err, line)
				continue
			}
			r.AggregateLines = append(r.AggregateLines, line)
			r.Aggregates = append(r.Aggregates, a)
		case "summary":
			var s jsonSummary
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Errorf("bad JSON summary: %v\n%s", err, line)
				continue
			}
			if r.HasSummary {
				t.Errorf("a second JSON summary: %s", line)
			}
			for _, p := range []string{"tracepoint", "lsm", "socket"} {
				if _, ok := s.Paths[p]; !ok {
					t.Errorf("JSON summary has no %q path: %s", p, line)
				}
			}
			r.Summary = events.Summary{
				Tracepoint: s.Paths["tracepoint"], LSM: s.Paths["lsm"], Socket: s.Paths["socket"],
				Received: s.Received, Malformed: s.Malformed, Rules: s.Rules, Unaggregated: s.Unagg,
			}
			r.HasSummary, r.Pressure = true, s.Pressure
		}
	}
	if r.HasSummary {
		return r
	}
	found := 0
	for _, line := range stderr {
		if m := textSummaryRE.FindStringSubmatch(line); m != nil {
			emitted, _ := strconv.ParseUint(m[2], 10, 64)
			dropped, _ := strconv.ParseUint(m[3], 10, 64)
			suppressed, _ := strconv.ParseUint(m[4], 10, 64) // "" when absent: 0
			c := events.PathCounts{Emitted: emitted, Dropped: dropped, Suppressed: suppressed}
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
		if m := ruleCountsRE.FindStringSubmatch(line); m != nil {
			id, _ := strconv.ParseUint(m[1], 10, 32)
			sup, _ := strconv.ParseUint(m[2], 10, 64)
			drop, _ := strconv.ParseUint(m[3], 10, 64)
			r.Summary.Rules = append(r.Summary.Rules, events.RuleCounts{RuleID: uint32(id), Suppressed: sup, Dropped: drop})
		}
		if m := malformedRE.FindStringSubmatch(line); m != nil {
			r.Summary.Malformed, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if strings.HasPrefix(line, events.PressureWarning) {
			r.Pressure = true
		}
	}
	r.HasSummary = found == 3
	return r
}
