package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestTrace: --trace reports the files an in-scope process opens, with the
// path read from its memory and the open's result, and the programs it
// executes; nothing for a process outside the scope; and it decides
// nothing.
func TestTrace(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "observed.txt")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.txt")
	cg := assaytest.NewCgroup(t)
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nnetwork:\n  deny_ports: [9]\n"), 0o600)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--trace", "--output", "json")
	in := assaytest.Probe(t, &cg, "cat", file)
	if in.Exit != 0 || in.Out != "hello" {
		t.Fatalf("in-scope cat: %+v", in)
	}
	miss := assaytest.Probe(t, &cg, "open", missing, "r")
	if miss.Errno != "ENOENT" {
		t.Fatalf("open of a missing file: %+v", miss)
	}
	outside := assaytest.Probe(t, nil, "cat", file)
	if outside.Exit != 0 {
		t.Fatalf("outside cat: %+v", outside)
	}
	time.Sleep(300 * time.Millisecond)
	res := m.Stop()
	var sawOpen, sawExec, sawMissing bool
	for _, e := range res.Events {
		if int(e.PID) == outside.ChildPID || int(e.PID) == outside.PID {
			t.Errorf("event for an out-of-scope process: %+v", e)
		}
		if e.Verdict != "observed" || e.RuleID != 0 {
			t.Errorf("trace event that decides: %+v", e)
		}
		if e.Kind == "open" && e.Path == "" {
			t.Errorf("open event without a path: %+v", e)
		}
		switch {
		case int(e.PID) == in.ChildPID && e.Kind == "open" && e.Path == file:
			sawOpen = e.Result == "ok"
		case int(e.PID) == in.ChildPID && e.Kind == "exec" && strings.HasSuffix(e.Path, "/cat"):
			sawExec = true
		case int(e.PID) == miss.PID && e.Kind == "open" && e.Path == missing:
			sawMissing = e.Result == "ENOENT" && e.Ret != nil && *e.Ret == -2
		}
	}
	if !sawOpen || !sawExec || !sawMissing {
		t.Errorf("open seen %v, exec seen %v, failed open seen %v; events:\n%s", sawOpen, sawExec, sawMissing, strings.Join(res.EventLines, "\n"))
	}
	if res.Summary.Tracepoint.Emitted != uint64(len(res.Events)) || res.Summary.Tracepoint.Dropped != 0 {
		t.Errorf("tracepoint summary %+v, events %d", res.Summary.Tracepoint, len(res.Events))
	}
}
