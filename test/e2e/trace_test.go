package e2e_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
)

// TestTrace: --trace reports the files an in-scope process opens (the
// opened file's path, from the kernel), a failed open with the path
// argument as written, the open's result, and the programs it executes; nothing for a process outside the scope; and it decides
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
	// The scope check walks the task's cgroup ancestry (in_scope_btf):
	// two levels below the scope is in scope, a sibling cgroup (same
	// level, another id) is not.
	nested, err := cgroup.CreateLeaf(cg.Path, "nested")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cgroup.Remove(nested) })
	deeper, err := cgroup.CreateLeaf(nested.Path, "deeper")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cgroup.Remove(deeper) })
	deep := assaytest.Probe(t, &deeper, "open", file, "r")
	if !deep.Ok() {
		t.Fatalf("open two cgroups below the scope: %+v", deep)
	}
	sibling := assaytest.NewCgroup(t)
	sib := assaytest.Probe(t, &sibling, "open", file, "r")
	if !sib.Ok() {
		t.Fatalf("open in a sibling cgroup: %+v", sib)
	}
	outside := assaytest.Probe(t, nil, "cat", file)
	if outside.Exit != 0 {
		t.Fatalf("outside cat: %+v", outside)
	}
	time.Sleep(300 * time.Millisecond)
	res := m.Stop()
	var sawOpen, sawExec, sawMissing, sawDeep bool
	for _, e := range res.Events {
		if int(e.PID) == outside.ChildPID || int(e.PID) == outside.PID || int(e.PID) == sib.PID {
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
			sawOpen = e.Result == "ok" && e.PathSource == "file"
		case int(e.PID) == in.ChildPID && e.Kind == "exec" && strings.HasSuffix(e.Path, "/cat"):
			sawExec = e.PathSource == "file"
		case int(e.PID) == deep.PID && e.Kind == "open" && e.Path == file:
			sawDeep = true
		case int(e.PID) == miss.PID && e.Kind == "open" && e.Path == missing:
			sawMissing = e.Result == "ENOENT" && e.Ret != nil && *e.Ret == -2 && e.PathSource == "argument"
		}
	}
	if !sawOpen || !sawExec || !sawMissing || !sawDeep {
		t.Errorf("open seen %v, exec seen %v, failed open seen %v, nested open seen %v; events:\n%s", sawOpen, sawExec, sawMissing, sawDeep, strings.Join(res.EventLines, "\n"))
	}
	if res.Summary.Tracepoint.Emitted != uint64(len(res.Events)) || res.Summary.Tracepoint.Dropped != 0 {
		t.Errorf("tracepoint summary %+v, events %d", res.Summary.Tracepoint, len(res.Events))
	}
}

// TestTraceSwappedPath: a thread's open waits in the kernel on a named
// pipe while another thread rewrites the path argument in memory to name
// another file, then lets the open return. The traced open names the file
// the kernel opened (the pipe, path_source file), not what the argument
// says at the syscall's exit.
func TestTraceSwappedPath(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other-file-named-by-the-swapped-argument")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cg := assaytest.NewCgroup(t)
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nnetwork:\n  deny_ports: [9]\n"), 0o600)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--trace", "--output", "json")
	res := assaytest.Probe(t, &cg, "open-swapped", fifo, other)
	if !res.Ok() || res.Out != "fifo" {
		t.Fatalf("open-swapped: %+v", res)
	}
	stop := m.Stop() // drains the ring buffer
	var found bool
	for _, e := range stop.Events {
		if int(e.TID) != res.TID || e.Kind != "open" || e.Ret == nil || *e.Ret < 0 {
			continue
		}
		found = true
		if e.Path != fifo || e.PathSource != "file" {
			t.Errorf("the open of the pipe is reported as path=%q path_source=%q, want %q from the file", e.Path, e.PathSource, fifo)
		}
	}
	if !found {
		t.Errorf("no successful open by thread %d; events:\n%s", res.TID, strings.Join(stop.EventLines, "\n"))
	}
}

// TestTraceUnixConnect: --trace reports a connect to a Unix socket at a
// path with the socket file's path as the kernel names it (through a
// symlink: the socket itself), as a UNIX CONNECT observation; a connect to
// an abstract socket is not reported (it has no path).
func TestTraceUnixConnect(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	dir := t.TempDir()
	assaytest.PublicDir(t, dir)
	sock := filepath.Join(dir, "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(sock, 0o777)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	cg := assaytest.NewCgroup(t)
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nnetwork:\n  deny_ports: [9]\n"), 0o600)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--trace", "--output", "json")
	res := assaytest.Probe(t, &cg, "unix-connect", link)
	if !res.Ok() {
		t.Fatalf("unix-connect: %+v", res)
	}
	abs := assaytest.Probe(t, &cg, "unix-connect-abstract", "assay-no-such-socket")
	stop := m.Stop()
	var found int
	for _, e := range stop.Events {
		if e.Kind != "unix" {
			continue
		}
		found++
		if int(e.PID) != res.PID || e.Path != sock || e.PathSource != "file" || e.Verdict != "observed" {
			t.Errorf("unix connect event %+v, want pid %d path %s from the file", e, res.PID, sock)
		}
		if int(e.PID) == abs.PID {
			t.Errorf("an abstract connect reported: %+v", e)
		}
	}
	if found != 1 {
		t.Errorf("%d unix connect events, want 1:\n%s", found, strings.Join(stop.EventLines, "\n"))
	}
}
