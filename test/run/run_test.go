package run_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

const netPolicy = `version: 1
network:
  deny_ports: [{port: 9, id: 40}]
  deny_cidrs: [{cidr: 127.0.0.64/26, id: 41}]
`

var socketAttach = []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg}

// attached returns the ids of the programs attached to the cgroup at the
// socket attach points.
func attached(t *testing.T, s cgroup.Scope) []ebpf.ProgramID {
	t.Helper()
	f, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []ebpf.ProgramID
	for _, typ := range socketAttach {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: typ})
		if err != nil {
			t.Fatalf("query %v on %s: %v", typ, s.Path, err)
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// programsFreed waits up to 3s for every program id to be gone from the
// kernel (no link, descriptor or attachment holds it any more).
func programsFreed(t *testing.T, ids []ebpf.ProgramID) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Now().After(deadline) {
				t.Fatalf("program %d still loaded after assay exited (err %v)", id, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// jsonLines decodes a JSON-lines file into generic objects.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("events file line %q: %v", l, err)
		}
		assaytest.CheckSchema(t, l)
		out = append(out, m)
	}
	return out
}

func TestRunStartsInFreshCgroup(t *testing.T) {
	e := newEnv(t)
	evfile := filepath.Join(e.dir, "events.json")
	r := e.run(nil, "--policy", e.policy(netPolicy), "--trace", "--output", "json", "--events", evfile, "--", "cat", "/proc/self/cgroup")
	if r.status != 0 {
		t.Fatalf("status %d\n%s", r.status, r.stderr)
	}
	var rel string
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "0::"); ok {
			rel = v
		}
	}
	mount, _ := cgroup.Mount()
	leafPath := filepath.Join(mount, rel)
	if filepath.Dir(leafPath) != e.parent.Path || !strings.HasPrefix(filepath.Base(leafPath), "assay-") {
		t.Fatalf("cat ran in cgroup %q, want a fresh assay-* child of %s\nstdout:\n%s", rel, e.parent.Path, r.stdout)
	}
	if !gone(leafPath) {
		t.Errorf("cgroup %s still exists after assay exited", leafPath)
	}
	evs := jsonLines(t, evfile)
	if evs[0]["type"] != "start" {
		t.Fatalf("first events line is not the start line: %v", evs[0])
	}
	// Then assay's messages (as JSON), then the report.
	for len(evs) > 1 && evs[1]["type"] == "message" {
		evs = evs[1:]
	}
	evs = evs[1:]
	if evs[0]["type"] != "enforcement" || evs[0]["cgroup"] != leafPath {
		t.Fatalf("first events line is not the enforcement report for %s: %v", leafPath, evs[0])
	}
	leafID := evs[0]["cgroup_id"]
	// The exec tracepoint fires inside execve, before the first instruction
	// of the new program, and the in-kernel scope check only reports tasks
	// already in the cgroup: the command was in the cgroup from its start.
	// Before it, assay's own init and shim (/proc/self/exe, named as the
	// file executed: the assay binary) execute there.
	catPath, err := filepath.EvalSymlinks(lookPath(t, "cat"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := filepath.EvalSymlinks(assaytest.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		if ev["kind"] == "exec" && ev["path"] == self {
			continue
		}
		if ev["kind"] == "exec" {
			if ev["path"] != catPath || ev["cgroup_id"] != leafID {
				t.Errorf("first exec event %v, want path %s in cgroup %v", ev, catPath, leafID)
			}
			found = true
			break
		}
	}
	if !found {
		t.Errorf("no exec event for %s in %s", catPath, evfile)
	}
	if last := evs[len(evs)-1]; last["type"] != "summary" {
		t.Errorf("last events line is not the summary: %v", last)
	}
	// Only assay's messages (as JSON) go to stderr: events, the report and
	// the summary are in the file.
	for _, typ := range []string{`"type":"event"`, `"type":"enforcement"`, `"type":"summary"`} {
		if strings.Contains(r.stderr, typ) {
			t.Errorf("%s on stderr although --events was given:\n%s", typ, r.stderr)
		}
	}
}

func TestRunNetwork(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	allowed := ln.Addr().String()
	pol := e.policy(netPolicy)
	want := fmt.Sprintf("connect 127.0.0.1:9 EPERM\nconnect 127.0.0.77:80 EPERM\nconnect %s ok\n", allowed)
	wait := func() {
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Error("the allowed connection never arrived")
		}
	}

	t.Run("child", func(t *testing.T) {
		r := e.run(nil, "--policy", pol, "--", "@", "connect", "127.0.0.1:9", "127.0.0.77:80", allowed)
		if r.status != 0 || r.stdout != want {
			t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want, r.stderr)
		}
		wait()
		for _, re := range []string{
			`BLOCKED CONNECT: dst=127\.0\.0\.1:9 proto=tcp cgroup=\d+ rule_id=40 `,
			`BLOCKED CONNECT: dst=127\.0\.0\.77:80 proto=tcp cgroup=\d+ rule_id=41 `,
			`Socket ringbuf: emitted=2 dropped=0`,
		} {
			if !regexp.MustCompile(re).MatchString(r.stderr) {
				t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
			}
		}
	})

	t.Run("grandchild", func(t *testing.T) {
		evfile := filepath.Join(e.dir, "gc.json")
		r := e.run(nil, "--policy", pol, "--output", "json", "--events", evfile, "--", "@", "spawn", "connect", "127.0.0.1:9", "127.0.0.77:80", allowed)
		if r.status != 0 || r.stdout != want {
			t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want, r.stderr)
		}
		wait()
		if strings.Contains(r.stderr, "BLOCKED") {
			t.Errorf("events on stderr although --events was given:\n%s", r.stderr)
		}
		blocked := map[float64]bool{}
		var summary map[string]any
		for _, ev := range jsonLines(t, evfile) {
			switch ev["type"] {
			case "event":
				if ev["kind"] == "connect" && ev["verdict"] == "blocked" {
					blocked[ev["rule_id"].(float64)] = true
				}
			case "summary":
				summary = ev
			}
		}
		if !blocked[40] || !blocked[41] || len(blocked) != 2 {
			t.Errorf("blocked rule ids in %s: %v, want 40 and 41", evfile, blocked)
		}
		if summary == nil || summary["received"].(float64) != 2 {
			t.Errorf("summary %v, want 2 received", summary)
		}
	})
}

func TestRunStdio(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)

	t.Run("stdout byte-exact", func(t *testing.T) {
		r := e.run(nil, "--policy", pol, "--", "@", "blob")
		if r.status != 0 {
			t.Fatalf("status %d\n%s", r.status, r.stderr)
		}
		if want := blob(); r.stdout != string(want) {
			t.Fatalf("stdout: %d bytes, want the %d-byte blob exactly (assay must not write to stdout)", len(r.stdout), len(want))
		}
	})

	t.Run("shared descriptors", func(t *testing.T) {
		// The command gets assay's descriptors, not a copy: its fd 1 is the
		// very pipe assay was given, and stdin reaches it unchanged.
		rd, wr, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(wr.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		cmd := e.command("--policy", pol, "--", "@", "echo")
		var errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(blob()), wr, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wr.Close()
		out := make(chan []byte)
		go func() {
			var b bytes.Buffer
			b.ReadFrom(rd)
			out <- b.Bytes()
		}()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v\n%s", err, errb.String())
		}
		if got := <-out; !bytes.Equal(got, blob()) {
			t.Errorf("stdin to stdout: %d bytes, want the %d-byte blob", len(got), len(blob()))
		}
		if want := fmt.Sprintf("helper fd1=pipe:[%d]", st.Ino); !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	})
}

func TestRunExitStatus(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)
	notExec := filepath.Join(e.dir, "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"exit 3", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 143, ""},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -KILL $$"}, 137, ""},
		{"not found", []string{"no-such-command-assay"}, 127, `assay: exec: "no-such-command-assay": executable file not found in $PATH`},
		{"not executable", []string{notExec}, 126, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(nil, append([]string{"--policy", pol, "--"}, tc.args...)...)
			if r.status != tc.status || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("status %d, want %d; stderr (want %q):\n%s", r.status, tc.status, tc.stderr, r.stderr)
			}
		})
	}
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"--policy", pol}, {"--output", "yaml", "--", "true"}, {"--no-such-flag", "--", "true"}} {
			r := e.run(nil, args...)
			if r.status != 125 {
				t.Errorf("assay run %q: status %d, want 125\n%s", args, r.status, r.stderr)
			}
		}
	})
	ents, _ := os.ReadDir(e.parent.Path)
	for _, ent := range ents {
		if ent.IsDir() {
			t.Errorf("cgroup %s left behind", ent.Name())
		}
	}
}

func TestRunHelp(t *testing.T) {
	out, err := exec.Command(assaytest.Binary(t), "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	var flags []string
	for sc.Scan() {
		// "      --policy FILE   policy FILE ..." or "  -h, --help ..."
		for _, w := range strings.Fields(sc.Text()) {
			if f, ok := strings.CutPrefix(strings.TrimSuffix(w, ","), "--"); ok {
				flags = append(flags, f)
				break
			}
		}
	}
	for _, want := range []string{"policy", "output", "events", "audit", "cgroup-parent", "allow-degraded", "trace"} {
		found := false
		for _, f := range flags {
			found = found || f == want
		}
		if !found {
			t.Errorf("assay run --help lacks --%s:\n%s", want, out)
		}
	}
}

// TestRunUnspecifiedAddresses: under `assay run`, connecting to 0.0.0.0 or
// :: (which the kernel turns into loopback) is judged as the loopback
// address it becomes, and the event names both.
func TestRunUnspecifiedAddresses(t *testing.T) {
	e := newEnv(t)
	ln4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	p4, p6 := ln4.Addr().(*net.TCPAddr).Port, ln6.Addr().(*net.TCPAddr).Port
	pol := e.policy("version: 1\nnetwork:\n  deny_cidrs: [{cidr: 127.0.0.0/8, id: 50}, {cidr: \"::1/128\", id: 51}]\n")
	a4, a6 := fmt.Sprintf("0.0.0.0:%d", p4), fmt.Sprintf("[::]:%d", p6)
	r := e.run(nil, "--policy", pol, "--", "@", "connect", a4, a6)
	want := fmt.Sprintf("connect %s EPERM\nconnect %s EPERM\n", a4, a6)
	if r.status != 0 || r.stdout != want {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want, r.stderr)
	}
	for _, re := range []string{
		fmt.Sprintf(`BLOCKED CONNECT: dst=127\.0\.0\.1:%d proto=tcp cgroup=\d+ rule_id=50 family=inet requested=0\.0\.0\.0 `, p4),
		fmt.Sprintf(`BLOCKED CONNECT: dst=\[::1\]:%d proto=tcp cgroup=\d+ rule_id=51 family=inet6 requested=:: `, p6),
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
		}
	}
}

// TestRunLinesCannotBeForged: every line assay writes during a run starts
// with that run's token, named by its first line. A command that prints a
// byte-exact copy of a real BLOCKED line (from an earlier run) on the
// shared stderr cannot make it look like this run's: the copy carries the
// earlier run's token, the real line this run's, and the command has no
// way to learn that (not in its environment or arguments).
func TestRunLinesCannotBeForged(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(netPolicy)
	tokenRE := regexp.MustCompile(`^\[assay:([a-z2-7]{16})\] assay: this run's token is ([a-z2-7]{16}): `)
	token := func(r result) string {
		m := tokenRE.FindStringSubmatch(r.raw)
		if m == nil || m[1] != m[2] {
			t.Fatalf("the first stderr line does not name the token:\n%s", r.raw)
		}
		return m[1]
	}
	blocked := func(r result, tok string) string {
		for _, l := range strings.Split(r.raw, "\n") {
			if strings.Contains(l, "BLOCKED CONNECT: dst=127.0.0.1:9 ") && events.Genuine(l, tok) {
				return l
			}
		}
		t.Fatalf("no BLOCKED line with token %s:\n%s", tok, r.raw)
		return ""
	}

	first := e.run(nil, "--policy", pol, "--", "@", "connect", "127.0.0.1:9")
	t1 := token(first)
	// Every line of the first run is assay's, and carries its token.
	for _, l := range strings.Split(strings.TrimSpace(first.raw), "\n") {
		if !events.Genuine(l, t1) {
			t.Errorf("an assay line without the run's token: %q", l)
		}
	}
	real1 := blocked(first, t1)

	second := e.run(nil, "--policy", pol, "--", "@", "forge", real1, "127.0.0.1:9")
	if second.status != 0 || !strings.Contains(second.raw, real1+"\n") {
		t.Fatalf("status %d; the command's copy is not on stderr:\n%s", second.status, second.raw)
	}
	t2 := token(second)
	if t2 == t1 {
		t.Fatalf("two runs with the same token %s", t1)
	}
	real2 := blocked(second, t2)
	if events.Genuine(real1, t2) {
		t.Errorf("the command's byte-exact copy %q passes for the second run's line", real1)
	}
	if !strings.HasPrefix(real2, events.TokenPrefix(t2)) || strings.Contains(second.stdout, t2) {
		t.Errorf("the real line %q, or the command's environment (%q) carries the token %s", real2, second.stdout, t2)
	}
	forged := 0
	for _, l := range strings.Split(strings.TrimSpace(second.raw), "\n") {
		if !events.Genuine(l, t2) {
			forged++
			if l != real1 {
				t.Errorf("unexpected line without the token: %q", l)
			}
		}
	}
	if forged != 1 {
		t.Errorf("%d lines without the second run's token, want the one copy:\n%s", forged, second.raw)
	}
}
