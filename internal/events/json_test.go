package events

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
)

// checkJSON asserts that the hand-written JSON of e is valid and carries
// exactly what encoding/json makes of ToJSON(e).
func checkJSON(t *testing.T, r *Renderer, e Event) {
	t.Helper()
	line := r.appendJSON(nil, e)
	var got, want JSONEvent
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	ref, err := json.Marshal(r.ToJSON(e))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hand-written JSON differs:\n got %s\nwant %s", line, ref)
	}
}

func TestJSONMatchesEncodingJSON(t *testing.T) {
	r := NewRenderer(nil, JSON, func(id uint32) string {
		if id == 7 {
			return "/srv/\"quoted\"\n\\path\u2028\x01"
		}
		return ""
	}, 12345)
	for _, e := range []Event{
		{Kind: KindConnect, Verdict: VerdictBlocked, RuleID: 40, PID: 1, TID: 2, CgroupID: 3, MonoNS: 99, Comm: "curl",
			Family: AFInet, Protocol: 6, Port: 22, Addr: netip.MustParseAddr("10.0.0.5")},
		{Kind: KindSendmsg, Verdict: VerdictAudit, RuleID: 1000000, Comm: "dig\xff\xfe", Family: AFInet6, Protocol: 17,
			Port: 53, Addr: netip.MustParseAddr("::ffff:10.0.0.5"), Mapped: true},
		{Kind: KindConnect, Verdict: VerdictBlocked, Family: AFInet6, Protocol: 99, Addr: netip.MustParseAddr("2001:db8::1")},
		{Kind: KindConnect, Verdict: VerdictBlocked, Family: AFInet6, Protocol: 6, Addr: netip.MustParseAddr("::1"), Unspec: UnspecV6},
		{Kind: KindSendmsg, Verdict: VerdictAudit, Family: AFInet, Protocol: 17, Addr: netip.MustParseAddr("127.0.0.1"), Unspec: UnspecV4},
		{Kind: KindFile, Verdict: VerdictBlocked, RuleID: 7, Dev: 2050, Ino: 918273, Op: OpRename, Comm: "x\n[PID 1]"},
		{Kind: KindFile, Verdict: VerdictAudit, RuleID: 8, Op: OpOpen},
		{Kind: KindFile, Verdict: VerdictBlocked, RuleID: 1000002, Op: OpOpen, Path: "/etc/\"shadow\n"}, // judged from a traced open (policy v2)
		{Kind: KindTraceOpen, Verdict: VerdictObserved, Path: "/etc/hosts", Flags: 0x80000, Ret: 3},
		{Kind: KindTraceOpen, Verdict: VerdictObserved, Path: "", Ret: -13},
		{Kind: KindTraceExec, Verdict: VerdictObserved, Path: "/bin/\tsh"},
		{Kind: KindTraceFileOp, Verdict: VerdictObserved, Path: "/w/b", Op: OpRename, Target: true, Source: SourceDirArg},
		{Kind: KindTraceFileOp, Verdict: VerdictObserved, Path: "/w/lib.so", Op: OpMmap, Source: SourceFile},
		{Kind: KindConnect, Verdict: VerdictBlocked, RuleID: 40, Family: AFInet, Protocol: 6, Port: 22, Addr: netip.MustParseAddr("10.0.0.5"),
			MCP: []MCPCall{{Method: "tools/call", Tool: "fetch", ID: json.RawMessage(`7`)}}},
		{Kind: KindFile, Verdict: VerdictBlocked, RuleID: 7, Op: OpOpen,
			MCP: []MCPCall{{Method: "tools/call", Tool: "read\n\"file", ID: json.RawMessage(`"a-1"`)}, {Method: "resources/read", ID: json.RawMessage(`8`)}}},
		{Kind: KindTool, Verdict: VerdictBlocked, RuleID: 3, PID: 9, TID: 9, Tool: "write_file",
			MCP: []MCPCall{{Method: "tools/call", Tool: "write_file", ID: json.RawMessage(`12`)}}},
		{Kind: KindDNS, Verdict: VerdictBlocked, RuleID: 1000005, CgroupID: 9, Name: "secret.test", QType: 1},
		{Kind: KindDNS, Verdict: VerdictAudit, RuleID: 1000005, Name: "a\"b\n.test", QType: 4242,
			MCP: []MCPCall{{Method: "tools/call", Tool: "fetch", ID: json.RawMessage(`3`)}}},
	} {
		checkJSON(t, r, e)
	}
}
