package run_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestRunEventsAppend: --events FILE appends: what was in the file stays,
// and each run adds a start line (RFC 3339 UTC time, pid, policy, the
// command), its enforcement report, its events and its summary. In text
// and in JSON.
func TestRunEventsAppend(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)

	t.Run("text", func(t *testing.T) {
		evfile := filepath.Join(e.dir, "events.log")
		if err := os.WriteFile(evfile, []byte("kept from before\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := range 2 {
			r := e.run(nil, "--policy", pol, "--events", evfile, "--", "@", "connect", "127.0.0.1:9")
			if r.status != 0 || r.stdout != "connect 127.0.0.1:9 EPERM\n" {
				t.Fatalf("run %d: status %d, stdout %q\n%s", i, r.status, r.stdout, r.stderr)
			}
			// The report goes to stderr too; the events do not.
			if !strings.Contains(r.stderr, "assay: enforcement report for "+pol) || strings.Contains(r.stderr, "BLOCKED") {
				t.Errorf("run %d: stderr:\n%s", i, r.stderr)
			}
		}
		b, err := os.ReadFile(evfile)
		if err != nil {
			t.Fatal(err)
		}
		text := unmarked(string(b))
		if !strings.HasPrefix(text, "kept from before\n") {
			t.Errorf("the file's earlier content is gone:\n%s", text)
		}
		startRE := regexp.MustCompile(`(?m)^assay: (\S+) start: pid [0-9]+, assay .+, policy ` + regexp.QuoteMeta(pol) + `, command: \S+ connect 127\.0\.0\.1:9$`)
		starts := startRE.FindAllStringSubmatch(text, -1)
		if len(starts) != 2 {
			t.Fatalf("%d start lines, want 2:\n%s", len(starts), text)
		}
		for _, m := range starts {
			ts, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || ts.Location() != time.UTC || ts.Before(start.Add(-time.Second)) || ts.After(time.Now()) {
				t.Errorf("start time %q: %v (want RFC 3339 UTC, during the test)", m[1], err)
			}
		}
		// Per run, in order: start, report, event, summary.
		runs := strings.Split(text, " start: ")[1:]
		for i, run := range runs {
			ri := strings.Index(run, "assay: enforcement report for "+pol)
			bi := strings.Index(run, "BLOCKED CONNECT")
			si := strings.Index(run, "Socket ringbuf: emitted=1")
			if ri < 0 || bi < ri || si < bi {
				t.Errorf("run %d: want the report, then the event, then the summary:\n%s", i, run)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		evfile := filepath.Join(e.dir, "events.json")
		for i := range 2 {
			r := e.run(nil, "--policy", pol, "--output", "json", "--events", evfile, "--", "@", "connect", "127.0.0.1:9")
			if r.status != 0 {
				t.Fatalf("run %d: status %d\n%s", i, r.status, r.stderr)
			}
		}
		var types []string
		for _, ev := range jsonLines(t, evfile) {
			types = append(types, ev["type"].(string))
			if ev["type"] == "start" {
				if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil || ev["policy"] != pol {
					t.Errorf("start line %v", ev)
				}
			}
		}
		// assay's own messages (the root warning, when run as root) may
		// come between the start line and the report.
		got := strings.Join(types, " ")
		got = regexp.MustCompile(`( message)+`).ReplaceAllString(got, "")
		if want := "start enforcement event summary start enforcement event summary"; got != want {
			t.Errorf("line types %q, want %q", strings.Join(types, " "), want)
		}
	})
}

// TestRunJSONOnly: with --output json every line assay writes to stderr is
// a JSON object: messages, the report, events, the summary, and errors.
func TestRunJSONOnly(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)
	check := func(what, stderr string) map[string]int {
		t.Helper()
		types := map[string]int{}
		for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Errorf("%s: stderr line is not a JSON object: %q", what, l)
				continue
			}
			assaytest.CheckSchema(t, l)
			types[m["type"].(string)]++
		}
		return types
	}
	r := e.run(nil, "--output", "json", "--policy", pol, "--", "@", "connect", "127.0.0.1:9")
	if r.status != 0 || r.stdout != "connect 127.0.0.1:9 EPERM\n" {
		t.Fatalf("status %d, stdout %q\n%s", r.status, r.stdout, r.stderr)
	}
	if types := check("a run", r.stderr); types["enforcement"] != 1 || types["event"] != 1 || types["summary"] != 1 {
		t.Errorf("line types %v, want one report, one event, one summary:\n%s", types, r.stderr)
	}
	// The built-in policy's notice, and a failure.
	r = e.run(nil, "--output", "json", "--", "true")
	if types := check("no --policy", r.stderr); r.status != 0 || types["message"] == 0 || !strings.Contains(r.stderr, "built-in example policy") {
		t.Errorf("no --policy: status %d, types %v:\n%s", r.status, types, r.stderr)
	}
	r = e.run(nil, "--output", "json", "--policy", filepath.Join(e.dir, "missing.yaml"), "--", "true")
	if types := check("missing policy", r.stderr); r.status != 125 || types["message"] != 1 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Errorf("missing policy: status %d, types %v:\n%s", r.status, types, r.stderr)
	}
	r = e.run(nil, "--output", "json", "--events", filepath.Join(e.dir, "no-such-dir", "ev.json"), "--policy", pol, "--", "true")
	if types := check("--events in a missing directory", r.stderr); r.status != 125 || types["message"] != 1 {
		t.Errorf("--events in a missing directory: status %d, types %v:\n%s", r.status, types, r.stderr)
	}
}

// TestRunAuditHeader: with --audit the header lines say mode audit.
func TestRunAuditHeader(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)
	r := e.run(nil, "--policy", pol, "--audit", "--", "@", "connect", "127.0.0.1:9")
	if r.status != 0 || !strings.Contains(r.stdout, "connect 127.0.0.1:9 ") {
		t.Fatalf("status %d, stdout %q\n%s", r.status, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^assay: enforcement report for `+regexp.QuoteMeta(pol)+` \(.*mode audit\)`).MatchString(r.stderr) ||
		strings.Contains(r.stderr, "mode enforce") {
		t.Errorf("--audit: the header does not say mode audit:\n%s", r.stderr)
	}
}

// TestPolicyCheckParity: `assay policy check` refuses exactly the policies
// `assay run` refuses, with the same message: a missing path, a symlink
// (into /proc/self: the message names /proc/self, not a pid), a trailing
// slash on a file, a pattern. Relative policy paths are reported
// absolute.
func TestPolicyCheckParity(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(e.dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mtab := filepath.Join(e.dir, "mtab")
	if err := os.Symlink("/proc/self/mounts", mtab); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, path, want string }{
		{"missing", filepath.Join(e.dir, "missing"), "does not exist"},
		{"symlink", link, "is a symlink (" + link + " -> " + file + "): write the real path " + file},
		{"symlink into /proc/self", mtab, "it resolves to /proc/self/mounts, a different file for every process"},
		{"trailing slash on a file", file + "/", "ends with / but is not a directory"},
		{"pattern", e.dir + "/*.pem", `patterns ("*") are not supported`},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol := e.policy("version: 1\nfiles:\n  deny:\n    - " + c.path + "\n")
			rel, err := filepath.Rel(e.dir, pol)
			if err != nil {
				t.Fatal(err)
			}
			chk := exec.Command(assaytest.Binary(t), "policy", "check", rel)
			chk.Dir = e.dir
			out, err := chk.CombinedOutput()
			status := chk.ProcessState.ExitCode()
			if err == nil || status != 1 {
				t.Errorf("policy check: status %d, want 1:\n%s", status, out)
			}
			checkLine := strings.TrimSuffix(string(out), "\n")
			prefix := "assay: " + pol + ":4: files.deny: "
			if strings.Contains(checkLine, "\n") || !strings.HasPrefix(checkLine, prefix) || !strings.Contains(checkLine, c.want) {
				t.Errorf("policy check: want one line starting %q containing %q, got:\n%s", prefix, c.want, out)
			}
			r := e.run(nil, "--policy", pol, "--", "true")
			if r.status != 125 {
				t.Errorf("run: status %d, want 125", r.status)
			}
			if !strings.Contains(r.stderr, checkLine+"\n") {
				t.Errorf("run does not report the line policy check did (%q):\n%s", checkLine, r.stderr)
			}
		})
	}
}
