package events

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// netRecord builds a record as the kernel lays it out.
func netRecord(kind Kind, verdict Verdict, rule uint32, family uint16, addr []byte, port uint16, mapped bool) []byte {
	b := make([]byte, NetSize)
	b[0], b[1] = byte(kind), byte(verdict)
	binary.LittleEndian.PutUint16(b[2:], NetSize)
	binary.LittleEndian.PutUint32(b[4:], rule)
	binary.LittleEndian.PutUint32(b[8:], 4242)
	binary.LittleEndian.PutUint32(b[12:], 4243)
	binary.LittleEndian.PutUint64(b[16:], 4026532987)
	binary.LittleEndian.PutUint64(b[24:], 1000)
	copy(b[32:48], "curl")
	p := b[HeaderSize:]
	binary.LittleEndian.PutUint16(p[0:], family)
	binary.LittleEndian.PutUint16(p[2:], port)
	p[4] = 6
	if mapped {
		p[5] = 1
	}
	copy(p[8:], addr)
	return b
}

// withUnspec sets a network record's unspecified-address code.
func withUnspec(b []byte, u Unspec) []byte {
	b[HeaderSize+6] = byte(u)
	return b
}

func fileRecord(verdict Verdict, rule uint32, dev uint32, ino uint64) []byte {
	b := make([]byte, FileSize)
	b[0], b[1] = byte(KindFile), byte(verdict)
	binary.LittleEndian.PutUint16(b[2:], FileSize)
	binary.LittleEndian.PutUint32(b[4:], rule)
	binary.LittleEndian.PutUint32(b[8:], 4242)
	binary.LittleEndian.PutUint32(b[12:], 4242)
	binary.LittleEndian.PutUint64(b[16:], 4026532987)
	copy(b[32:48], "cat")
	p := b[HeaderSize:]
	binary.LittleEndian.PutUint32(p[0:], dev)
	p[4] = byte(OpOpen)
	binary.LittleEndian.PutUint64(p[8:], ino)
	return b
}

func traceRecord(kind Kind, comm, path string) []byte {
	b := make([]byte, TraceSize)
	b[0], b[1] = byte(kind), byte(VerdictObserved)
	binary.LittleEndian.PutUint16(b[2:], TraceSize)
	binary.LittleEndian.PutUint32(b[8:], 7)
	binary.LittleEndian.PutUint32(b[12:], 7)
	copy(b[32:48], comm)
	p := b[HeaderSize:]
	binary.LittleEndian.PutUint16(p[8:], uint16(len(path)))
	copy(p[16:], path)
	return b
}

// fileOpRecord is an observed change (assay learn) of path.
func fileOpRecord(op FileOp, target bool, src PathSource, path string) []byte {
	b := traceRecord(KindTraceFileOp, "mv", path)
	flags := uint32(op)
	if target {
		flags |= FileOpTarget
	}
	binary.LittleEndian.PutUint32(b[HeaderSize:], flags)
	binary.LittleEndian.PutUint16(b[HeaderSize+10:], uint16(src))
	return b
}

func TestOperatorLines(t *testing.T) {
	v4 := []byte{10, 0, 0, 5}
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	mapped := netip.MustParseAddr("::ffff:10.0.0.5").As16()
	loop6 := netip.MustParseAddr("::1").As16()
	mappedLoop := netip.MustParseAddr("::ffff:127.0.0.1").As16()
	for _, tc := range []struct {
		rec  []byte
		want string
	}{
		{netRecord(KindConnect, VerdictBlocked, 40, AFInet, v4, 22, false),
			"[PID 4242] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet comm=curl tid=4243"},
		{netRecord(KindSendmsg, VerdictBlocked, 41, AFInet6, v6[:], 53, false),
			"[PID 4242] 🛡️ BLOCKED SENDMSG: dst=[2001:db8::1]:53 proto=tcp cgroup=4026532987 rule_id=41 family=inet6 comm=curl tid=4243"},
		{netRecord(KindConnect, VerdictAudit, 40, AFInet6, mapped[:], 22, true),
			"[PID 4242] 🔎 AUDIT CONNECT: dst=[::ffff:10.0.0.5]:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet6 mapped_ipv4=true comm=curl tid=4243"},
		// An unspecified destination names the loopback address judged
		// in its place and what was asked for.
		{withUnspec(netRecord(KindConnect, VerdictBlocked, 40, AFInet, []byte{127, 0, 0, 1}, 22, false), UnspecV4),
			"[PID 4242] 🛡️ BLOCKED CONNECT: dst=127.0.0.1:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet requested=0.0.0.0 comm=curl tid=4243"},
		{withUnspec(netRecord(KindSendmsg, VerdictBlocked, 41, AFInet6, loop6[:], 53, false), UnspecV6),
			"[PID 4242] 🛡️ BLOCKED SENDMSG: dst=[::1]:53 proto=tcp cgroup=4026532987 rule_id=41 family=inet6 requested=:: comm=curl tid=4243"},
		{withUnspec(netRecord(KindConnect, VerdictBlocked, 40, AFInet6, mappedLoop[:], 22, true), UnspecMapped),
			"[PID 4242] 🛡️ BLOCKED CONNECT: dst=[::ffff:127.0.0.1]:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet6 mapped_ipv4=true requested=::ffff:0.0.0.0 comm=curl tid=4243"},
		{fileRecord(VerdictBlocked, 7, 2050, 918273),
			"[PID 4242] 🛡️ BLOCKED FILE: dev=2050 ino=918273 cgroup=4026532987 rule_id=7 op=open comm=cat tid=4242"},
		{fileRecord(VerdictAudit, 7, 2050, 918273),
			"[PID 4242] 🔎 AUDIT FILE: dev=2050 ino=918273 cgroup=4026532987 rule_id=7 op=open comm=cat tid=4242"},
		{func() []byte {
			b := traceRecord(KindTraceOpen, "cat", "/home/agent/.ssh/id_ed25519")
			binary.LittleEndian.PutUint32(b[HeaderSize+4:], uint32(0xfffffff3)) // -EACCES
			return b
		}(),
			"[PID 7] OPEN: path=/home/agent/.ssh/id_ed25519 flags=0x0 cgroup=0 result=EACCES path_source=argument comm=cat tid=7 observation=trace"},
		{func() []byte {
			b := traceRecord(KindTraceOpen, "cat", "/etc/hosts")
			binary.LittleEndian.PutUint16(b[HeaderSize+10:], uint16(SourceFile))
			return b
		}(),
			"[PID 7] OPEN: path=/etc/hosts flags=0x0 cgroup=0 result=ok comm=cat tid=7 observation=trace"},
		// A hostile path or comm cannot end the line or forge a field.
		{fileOpRecord(OpRename, true, SourceDirArg, "/w/new name"),
			`[PID 7] RENAME TO: path="/w/new name" op=rename target=true cgroup=0 path_source=dir+argument comm=mv tid=7 observation=trace`},
		{fileOpRecord(OpUnlink, false, SourceFile, "/w/a"),
			"[PID 7] UNLINK: path=/w/a op=unlink cgroup=0 comm=mv tid=7 observation=trace"},
		{traceRecord(KindTraceExec, "x rule_id=1", "/tmp/a\n[PID 1] 🛡️ BLOCKED FILE: rule_id=9"),
			`[PID 7] EXEC: path="/tmp/a\n[PID 1] 🛡️ BLOCKED FILE: rule_id=9" cgroup=0 path_source=argument comm="x rule_id=1" tid=7 observation=trace`},
	} {
		e, err := Decode(tc.rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(AppendText(nil, e)); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	r := NewRenderer(&buf, JSON, func(id uint32) string {
		if id == 7 {
			return "/var/lib/private-demo/credentials.txt"
		}
		return ""
	}, 0)
	if err := r.Record(fileRecord(VerdictBlocked, 7, 2050, 918273)); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(netRecord(KindConnect, VerdictBlocked, 40, AFInet, []byte{10, 0, 0, 5}, 22, false)); err != nil {
		t.Fatal(err)
	}
	r.Record([]byte{1, 2, 3})
	r.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || r.Received != 2 || r.Malformed != 1 {
		t.Fatalf("lines=%d received=%d malformed=%d", len(lines), r.Received, r.Malformed)
	}
	var f, n map[string]any
	json.Unmarshal([]byte(lines[0]), &f)
	json.Unmarshal([]byte(lines[1]), &n)
	if f["kind"] != "file" || f["verdict"] != "blocked" || f["dev"] != 2050.0 || f["ino"] != 918273.0 ||
		f["rule_id"] != 7.0 || f["rule_path"] != "/var/lib/private-demo/credentials.txt" || f["pid"] != 4242.0 || f["op"] != "open" {
		t.Errorf("file event: %s", lines[0])
	}
	if n["kind"] != "connect" || n["dst_addr"] != "10.0.0.5" || n["dst_port"] != 22.0 || n["protocol"] != "tcp" ||
		n["family"] != "inet" || n["cgroup_id"] != 4026532987.0 || n["comm"] != "curl" {
		t.Errorf("net event: %s", lines[1])
	}
}

func TestMalformed(t *testing.T) {
	good := netRecord(KindConnect, VerdictBlocked, 1, AFInet, []byte{1, 2, 3, 4}, 1, false)
	cases := map[string][]byte{
		"empty":     nil,
		"short":     good[:20],
		"truncated": good[:NetSize-1],
		"bad kind":  append([]byte{99}, good[1:]...),
		"bad size": func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint16(b[2:], 9999)
			return b
		}(),
		"bad family": func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint16(b[HeaderSize:], 77)
			return b
		}(),
		"bad unspec": withUnspec(bytes.Clone(good), 4),
		"bad path len": func() []byte {
			b := traceRecord(KindTraceOpen, "c", "p")
			binary.LittleEndian.PutUint16(b[HeaderSize+8:], 5000)
			return b
		}(),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// Oversized: trailing bytes after a valid record are tolerated (the ring
	// buffer may pad), the record itself decodes.
	if _, err := Decode(append(bytes.Clone(good), 0, 0, 0, 0, 0, 0, 0, 0)); err != nil {
		t.Errorf("padded record: %v", err)
	}
}

func TestSummary(t *testing.T) {
	var b bytes.Buffer
	s := Summary{Socket: PathCounts{Emitted: 3, Dropped: 2}}
	s.WriteText(&b)
	want := "Tracepoint ringbuf: emitted=0 dropped=0\nLSM ringbuf: emitted=0 dropped=0\nSocket ringbuf: emitted=3 dropped=2\n" + PressureWarning
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("got %q", b.String())
	}
	b.Reset()
	Summary{}.WriteText(&b)
	if strings.Contains(b.String(), "pressure") {
		t.Errorf("pressure warning without drops: %q", b.String())
	}
}

// TestTimestamps: text lines start with the event's kernel time as RFC 3339
// UTC with microseconds, JSON carries it with nanoseconds, and both follow
// the clock pairing the renderer was last given (Anchor).
func TestTimestamps(t *testing.T) {
	var buf bytes.Buffer
	r := NewRenderer(&buf, Text, nil, 0)
	wall := time.Date(2026, 11, 29, 17, 20, 42, 0, time.FixedZone("CET", 3600))
	r.Anchor(wall, 5_000_000_000)
	e := Event{Kind: KindConnect, Verdict: VerdictBlocked, RuleID: 40, PID: 1, TID: 1, MonoNS: 5_000_000_000 + 123_456_789,
		Family: AFInet, Protocol: 6, Port: 22, Addr: netip.MustParseAddr("10.0.0.5"), Comm: "curl"}
	if err := r.Event(e); err != nil {
		t.Fatal(err)
	}
	r.Flush()
	want := "2026-11-29T16:20:42.123456Z [PID 1] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=0 rule_id=40 family=inet comm=curl tid=1\n"
	if buf.String() != want {
		t.Errorf("got  %q\nwant %q", buf.String(), want)
	}
	j := NewRenderer(nil, JSON, nil, 0)
	j.Anchor(wall, 5_000_000_000)
	e.MonoNS = 5_000_000_000 - 1_000 // before the pairing
	var got JSONEvent
	if err := json.Unmarshal(j.appendJSON(nil, e), &got); err != nil {
		t.Fatal(err)
	}
	if got.Time != "2026-11-29T16:20:41.999999000Z" || got.Schema != SchemaVersion {
		t.Errorf("JSON time %q schema %d", got.Time, got.Schema)
	}
	e.MonoNS = 5_000_000_000
	if got := j.ToJSON(e).Time; got != "2026-11-29T16:20:42.000000000Z" {
		t.Errorf("ToJSON time %q: want all nine digits", got)
	}
}

// TestMCPContext: events carry the MCP requests in flight, in text as
// " tool=NAME mcp_id=ID" pairs (" mcp_method=M mcp_id=ID" for other
// requests), in JSON as one object or, for several, an array; a tool event
// names its tool and rule.
func TestMCPContext(t *testing.T) {
	one := []MCPCall{{Method: "tools/call", Tool: "read_file", ID: json.RawMessage(`7`)}}
	two := []MCPCall{one[0], {Method: "resources/read", ID: json.RawMessage(`"r 1"`)}}
	conn := Event{Kind: KindConnect, Verdict: VerdictBlocked, RuleID: 40, PID: 1, TID: 1, Family: AFInet, Protocol: 6, Port: 22,
		Addr: netip.MustParseAddr("10.0.0.5"), Comm: "node"}
	for _, tc := range []struct {
		e          Event
		text, json string
	}{
		{conn, "[PID 1] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=0 rule_id=40 family=inet comm=node tid=1", ""},
		{withMCP(conn, one), "[PID 1] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=0 rule_id=40 family=inet comm=node tid=1 tool=read_file mcp_id=7",
			`"mcp":{"method":"tools/call","tool":"read_file","id":7}`},
		{withMCP(conn, two), `[PID 1] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=0 rule_id=40 family=inet comm=node tid=1 tool=read_file mcp_id=7 mcp_method=resources/read mcp_id="r 1"`,
			`"mcp":[{"method":"tools/call","tool":"read_file","id":7},{"method":"resources/read","id":"r 1"}]`},
		{Event{Kind: KindTool, Verdict: VerdictBlocked, RuleID: 3, PID: 5, TID: 5, CgroupID: 9, Tool: "write_file",
			MCP: []MCPCall{{Method: "tools/call", Tool: "write_file", ID: json.RawMessage(`12`)}}},
			"[PID 5] 🛡️ BLOCKED TOOL: name=write_file cgroup=9 rule_id=3 tool=write_file mcp_id=12",
			`"tool":"write_file","mcp":{"method":"tools/call","tool":"write_file","id":12}`},
		{Event{Kind: KindTool, Verdict: VerdictAudit, RuleID: 1000100, Tool: "x y"}, `[PID 0] 🔎 AUDIT TOOL: name="x y" cgroup=0 rule_id=1000100`, `"tool":"x y"`},
		{Event{Kind: KindDNS, Verdict: VerdictBlocked, RuleID: 1000005, CgroupID: 9, Name: "secret.test", QType: 28},
			"[PID 0] 🛡️ BLOCKED DNS: query=secret.test qtype=AAAA cgroup=9 rule_id=1000005", `"kind":"dns","verdict":"blocked","rule_id":1000005,"pid":0,"tid":0,"comm":"","cgroup_id":9,"query":"secret.test","qtype":"AAAA"`},
		{Event{Kind: KindDNS, Verdict: VerdictAudit, RuleID: 1000005, Name: "a b=.test", QType: 99},
			`[PID 0] 🔎 AUDIT DNS: query="a b=.test" qtype=TYPE99 cgroup=0 rule_id=1000005`, `"query":"a b=.test","qtype":"TYPE99"`},
	} {
		if got := string(AppendText(nil, tc.e)); got != tc.text {
			t.Errorf("text\n got %s\nwant %s", got, tc.text)
		}
		r := NewRenderer(nil, JSON, nil, 0)
		line := string(r.appendJSON(nil, tc.e))
		if tc.json == "" {
			if strings.Contains(line, `"mcp"`) {
				t.Errorf("JSON without context has an mcp field: %s", line)
			}
		} else if !strings.Contains(line, tc.json) {
			t.Errorf("JSON %s\nlacks %s", line, tc.json)
		}
		var back JSONEvent
		if err := json.Unmarshal([]byte(line), &back); err != nil || len(back.MCP) != len(tc.e.MCP) {
			t.Errorf("JSON %s: %v, %d calls back", line, err, len(back.MCP))
		}
	}
	// The renderer asks for the context of each event's kernel time.
	var buf bytes.Buffer
	r := NewRenderer(&buf, Text, nil, 0)
	r.SetMCP(func(mono uint64) []MCPCall {
		if mono == 100 {
			return one
		}
		return nil
	})
	conn.MonoNS = 100
	r.Event(conn)
	conn.MonoNS = 200
	r.Event(conn)
	r.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " tid=1 tool=read_file mcp_id=7") || !strings.HasSuffix(lines[1], " tid=1") {
		t.Errorf("lines %q", lines)
	}
	if _, err := Decode(append([]byte{byte(KindTool), byte(VerdictBlocked), HeaderSize, 0}, make([]byte, HeaderSize-4)...)); err == nil {
		t.Error("a kernel record of kind tool decoded")
	}
	if _, err := Decode(append([]byte{byte(KindDNS), byte(VerdictBlocked), HeaderSize, 0}, make([]byte, HeaderSize-4)...)); err == nil {
		t.Error("a kernel record of kind dns decoded")
	}
}

func withMCP(e Event, c []MCPCall) Event { e.MCP = c; return e }
