package mcptest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/mcptest/testserver"
	"github.com/assaymcp/assay/internal/testenv"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestMain(m *testing.M) { Main(m) }

func TestParseStream(t *testing.T) {
	good := `{"jsonrpc":"2.0","id":1,"result":{}}` + "\n" +
		`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}` + "\n" +
		`{"jsonrpc":"2.0","id":"s1","method":"roots/list","params":{}}` + "\n" +
		`{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"no"}}` + "\n"
	msgs, err := ParseStream([]byte(good))
	if err != nil || len(msgs) != 4 {
		t.Fatalf("good stream: %d messages, %v", len(msgs), err)
	}
	if !msgs[0].IsResponse() || !msgs[1].IsNotification() || !msgs[2].IsRequest() || !msgs[3].IsResponse() {
		t.Errorf("kinds wrong: %+v", msgs)
	}
	if msgs, err := ParseStream(nil); err != nil || msgs != nil {
		t.Errorf("empty stream: %v %v", msgs, err)
	}

	ok := `{"jsonrpc":"2.0","id":1,"result":{}}`
	for name, bad := range map[string]string{
		"stray text line":      ok + "\nassay: enforcing\n",
		"stray text prefix":    "x" + ok + "\n",
		"blank line":           ok + "\n\n",
		"leading space":        " " + ok + "\n",
		"trailing space":       ok + " \n",
		"CRLF":                 ok + "\r\n",
		"partial last line":    ok + "\n" + ok,
		"no newline":           ok,
		"two values on a line": ok + ok + "\n",
		"batch":                "[" + ok + "]\n",
		"not JSON":             "{oops}\n",
		"no jsonrpc":           `{"id":1,"result":{}}` + "\n",
		"jsonrpc 1.0":          `{"jsonrpc":"1.0","id":1,"result":{}}` + "\n",
		"unknown field":        `{"jsonrpc":"2.0","id":1,"result":{},"extra":1}` + "\n",
		"result and error":     `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}` + "\n",
		"neither":              `{"jsonrpc":"2.0","id":1}` + "\n",
		"no id, no method":     `{"jsonrpc":"2.0","result":{}}` + "\n",
		"null id":              `{"jsonrpc":"2.0","id":null,"result":{}}` + "\n",
		"object id":            `{"jsonrpc":"2.0","id":{},"result":{}}` + "\n",
		"request with result":  `{"jsonrpc":"2.0","id":1,"method":"x","result":{}}` + "\n",
		"NUL byte":             ok + "\n\x00\n",
	} {
		if _, err := ParseStream([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestCheckExchange(t *testing.T) {
	req := func(id int, method string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q}`+"\n", id, method)
	}
	resp := func(id int) string { return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{}}`+"\n", id) }
	note := `{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n"
	sreq := `{"jsonrpc":"2.0","id":0,"method":"roots/list"}` + "\n"

	if err := CheckExchange([]byte(req(1, "initialize")+note+req(2, "tools/list")+resp(0)), []byte(resp(1)+sreq+resp(2))); err != nil {
		t.Errorf("good exchange: %v", err)
	}
	for name, c := range map[string][2]string{
		"unanswered":         {req(1, "initialize") + req(2, "tools/list"), resp(1)},
		"answered twice":     {req(1, "initialize"), resp(1) + resp(1)},
		"unknown id":         {req(1, "initialize"), resp(1) + resp(7)},
		"id reused":          {req(1, "initialize") + req(1, "tools/list"), resp(1) + resp(1)},
		"server unanswered":  {req(1, "initialize"), resp(1) + sreq},
		"bad client stream":  {req(1, "initialize") + "junk\n", resp(1)},
		"stray server bytes": {req(1, "initialize"), resp(1) + "junk"},
	} {
		if err := CheckExchange([]byte(c[0]), []byte(c[1])); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestCommandTransport: a real mcp-testserver over the recording transport
// (no assay): the session works, every byte is recorded and clean, and the
// server exits 0 on its own when stdin is closed.
func TestCommandTransport(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a.txt"), "alpha\n")
	tr := &CommandTransport{Command: exec.Command(ServerBinary(t), "files", root)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: ProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: testserver.ReadFileTool, Arguments: map[string]any{"path": "a.txt"}})
	if err != nil || TextOf(res) != "alpha\n" {
		t.Fatalf("read_file: %v %v", res, err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if code := tr.Command.ProcessState.ExitCode(); code != 0 || len(tr.Signaled()) != 0 {
		t.Errorf("server exit %d, signals %v", code, tr.Signaled())
	}
	if err := CheckExchange(tr.Stdin(), tr.Stdout()); err != nil {
		t.Errorf("exchange: %v\nstdin:\n%s\nstdout:\n%s", err, tr.Stdin(), tr.Stdout())
	}
	if !strings.Contains(string(tr.Stdout()), `"text":"alpha\n"`) || !strings.Contains(string(tr.Stdin()), `"method":"initialize"`) {
		t.Errorf("recording incomplete:\nstdin:\n%s\nstdout:\n%s", tr.Stdin(), tr.Stdout())
	}
}

// TestCommandTransportRecordsStrayBytes: bytes a command writes outside
// the protocol are recorded - also after the last message, while it shuts
// down - and a command that ignores stdin's end is terminated.
func TestCommandTransportRecordsStrayBytes(t *testing.T) {
	t.Parallel()
	testenv.LookPath(t, "sh", "the stray-bytes command is a shell script")
	// Prints a banner where the initialize response should be, then, once
	// stdin ends, a goodbye; then it ignores the end of stdin until SIGTERM,
	// while a background child keeps stdout open for a while longer.
	// It waits in the `wait` builtin, which a trapped signal interrupts at
	// once: a loop of `sleep 0.05` acts on SIGTERM only after the current
	// sleep and a fork and exec, which at load 15 took longer than the
	// grace period and drew a SIGKILL too. The grace period covers the
	// shell getting from the end of stdin to its trap (echo, fork) on a
	// busy machine.
	script := `echo banner; cat >/dev/null; echo goodbye; (sleep 6) & sleep 600 >/dev/null & trap 'kill $!; exit 3' TERM; wait`
	tr := &CommandTransport{Command: exec.Command("sh", "-c", script), TerminateDuration: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: ProtocolVersion})
	if err == nil {
		t.Fatal("the SDK accepted a stream with a banner")
	}
	// Connect closed the connection on failure: the command was reaped.
	out := string(tr.Stdout())
	if !strings.HasPrefix(out, "banner\n") {
		t.Errorf("stdout %q does not start with the banner", out)
	}
	if err := CheckExchange(tr.Stdin(), tr.Stdout()); err == nil || !strings.Contains(err.Error(), "banner") {
		t.Errorf("CheckExchange: %v, want an error quoting the banner", err)
	}
	if tr.Command.ProcessState == nil {
		t.Fatal("the command was not reaped")
	}
	if !strings.HasSuffix(out, "goodbye\n") {
		t.Errorf("stdout %q: what the command wrote while shutting down was not recorded", out)
	}
	if sig := tr.Signaled(); len(sig) != 1 || sig[0] != "SIGTERM" {
		t.Errorf("signals %v, want SIGTERM", sig)
	}
	t.Logf("stdout %q, signals %v, exit %d", out, tr.Signaled(), tr.Command.ProcessState.ExitCode())
}

func TestParseOutputs(t *testing.T) {
	var r Result
	parseJSONEvents(&r, []string{
		`{"schema":1,"type":"start","time":"2026-11-26T01:02:03.000000000Z","pid":41,"version":"v1","policy":"/p.yaml","argv":["cat"]}`,
		`{"schema":1,"type":"message","time":"2026-11-26T01:02:03.000000000Z","message":"warning: x"}`,
		`{"schema":1,"type":"enforcement","time":"2026-11-26T01:02:03.000000000Z","cgroup":"/sys/fs/cgroup/x","cgroup_id":9,"audit":false,"files_mechanism":"bpf-lsm","rules":[{"id":7,"kind":"deny_path","rule":"/s","mechanism":"bpf-lsm"}]}`,
		`{"schema":1,"type":"event","time":"2026-11-26T01:02:03.456789012Z","kind":"file","verdict":"blocked","rule_id":7,"pid":42,"tid":43,"comm":"cat","cgroup_id":9,"dev":2050,"ino":918273,"op":"open","rule_path":"/s"}`,
		`{"schema":1,"type":"summary","time":"2026-11-26T01:02:04.000000000Z","paths":{"tracepoint":{"emitted":0,"dropped":0,"suppressed":0},"lsm":{"emitted":1,"dropped":0,"suppressed":0},"socket":{"emitted":0,"dropped":0,"suppressed":0}},"received":1,"malformed":0,"ring_buffer_pressure":false}`,
	})
	if len(r.Problems) != 0 || !r.HasStart || len(r.Messages) != 1 || !r.HasReport || !r.HasSummary || len(r.Events) != 1 {
		t.Fatalf("%+v", r)
	}
	if r.Report.Mechanism(7) != MechBPFLSM || r.Report.CgroupID != 9 || r.Summary.LSM.Emitted != 1 {
		t.Errorf("%+v", r)
	}
	if e := r.Events[0]; e.RuleID != 7 || *e.Dev != 2050 || *e.Ino != 918273 || e.RulePath != "/s" || e.Line == "" {
		t.Errorf("%+v", e)
	}
	var bad Result
	parseJSONEvents(&bad, []string{`{"schema":1,"time":"2026-11-26T01:02:03.456789012Z","type":"event","new_field":1}`, `not json`,
		`{"schema":1,"time":"2026-11-26T01:02:03.456789012Z","type":"what"}`, `{"type":"summary","paths":{}}`})
	if len(bad.Problems) != 4 {
		t.Errorf("problems %q", bad.Problems)
	}

	var tr Result
	stderr := []string{
		"assay: enforcement report for p.yaml (...) in cgroup /sys/fs/cgroup/x:",
		"assay:   rule 7   deny_path  /tmp/s      landlock: fallback, BPF LSM unavailable (EPERM)",
		"assay:   rule 40  deny_port  22          cgroup-bpf",
		"assay:   rule 41  deny_cidr  10.0.0.0/8  cgroup-bpf (audit)",
		"server says hello",
		"2026-11-26T01:02:03.456789Z [PID 4242] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet comm=curl tid=4243",
		"2026-11-26T01:02:03.456789Z [PID 4242] 🛡️ BLOCKED FILE: dev=2050 ino=918273 cgroup=4026532987 rule_id=7 op=open comm=cat tid=4242",
		"2026-11-26T01:02:03.456789Z [PID 4242] 🛡️ BLOCKED SENDMSG: dst=[::ffff:10.0.0.5]:53 proto=udp cgroup=4026532987 rule_id=41 family=inet6 mapped_ipv4=true comm=dig tid=4242",
		"Tracepoint ringbuf: emitted=0 dropped=0",
		"LSM ringbuf: emitted=1 dropped=0",
		"Socket ringbuf: emitted=2 dropped=0",
	}
	parseTextEvents(&tr, stderr)
	rep := textReport(stderr)
	if rep[7] != MechLandlock || rep[40] != MechCgroupBPF || rep[41] != MechCgroupBPF || len(rep) != 3 {
		t.Errorf("report %v", rep)
	}
	if !tr.HasSummary || tr.Summary.Socket.Emitted != 2 || len(tr.Events) != 3 {
		t.Fatalf("%+v", tr)
	}
	c, f, u := tr.Events[0], tr.Events[1], tr.Events[2]
	if c.Time != "2026-11-26T01:02:03.456789000Z" || c.Kind != "connect" || c.Verdict != "blocked" || c.RuleID != 40 || c.DstAddr != "10.0.0.5" || c.DstPort != 22 ||
		c.PID != 4242 || c.TID != 4243 || c.Comm != "curl" || c.CgroupID != 4026532987 || c.Family != "inet" || c.Protocol != "tcp" {
		t.Errorf("connect %+v", c)
	}
	if f.Kind != "file" || f.RuleID != 7 || *f.Dev != 2050 || *f.Ino != 918273 || f.Op != "open" {
		t.Errorf("file %+v", f)
	}
	if u.Kind != "sendmsg" || u.DstAddr != "::ffff:10.0.0.5" || u.DstPort != 53 {
		t.Errorf("sendmsg %+v", u)
	}
}
