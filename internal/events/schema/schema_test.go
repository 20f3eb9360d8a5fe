package schema

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/sandbox"
)

// TestEveryKindValidates: lines written by the real renderers - every
// event kind, each file op, with and without MCP context, the summary and
// the report - follow the schema.
func TestEveryKindValidates(t *testing.T) {
	var buf bytes.Buffer
	r := events.NewRenderer(&buf, events.JSON, func(id uint32) string { return "/srv/secret" }, 0)
	r.Anchor(time.Now(), 0)
	one := []events.MCPCall{{Method: "tools/call", Tool: "read_file", ID: json.RawMessage(`7`)}}
	two := append(one, events.MCPCall{Method: "resources/read", ID: json.RawMessage(`"r-1"`)})
	evs := []events.Event{
		{Kind: events.KindConnect, Verdict: events.VerdictBlocked, RuleID: 40, PID: 1, TID: 2, Comm: "curl", CgroupID: 9,
			Family: events.AFInet, Protocol: 6, Port: 22, Addr: netip.MustParseAddr("10.0.0.5")},
		{Kind: events.KindConnect, Verdict: events.VerdictAudit, RuleID: 1000000, Family: events.AFInet6, Protocol: 6,
			Addr: netip.MustParseAddr("::ffff:10.0.0.5"), Port: 443, Mapped: true, MCP: one},
		{Kind: events.KindSendmsg, Verdict: events.VerdictBlocked, RuleID: 41, Family: events.AFInet6, Protocol: 17,
			Addr: netip.MustParseAddr("::1"), Port: 53, MCP: two},
		{Kind: events.KindTraceOpen, Verdict: events.VerdictObserved, Path: "/etc/hosts", Flags: 0x80000, Ret: 3},
		{Kind: events.KindTraceOpen, Verdict: events.VerdictObserved, Ret: -13},
		{Kind: events.KindTraceExec, Verdict: events.VerdictObserved, Path: "/bin/sh", MCP: one},
		{Kind: events.KindTool, Verdict: events.VerdictBlocked, RuleID: 60, PID: 5, TID: 5, CgroupID: 9, Tool: "write_file",
			MCP: []events.MCPCall{{Method: "tools/call", Tool: "write_file", ID: json.RawMessage(`12`)}}},
		{Kind: events.KindTool, Verdict: events.VerdictAudit, RuleID: 1000100, Tool: "x", MCP: one},
	}
	for _, op := range []events.FileOp{events.OpOpen, events.OpLink, events.OpRename} {
		evs = append(evs, events.Event{Kind: events.KindFile, Verdict: events.VerdictBlocked, RuleID: 7, Dev: 2050, Ino: 9, Op: op},
			// judged in user space from a traced open (policy v2 under Landlock)
			events.Event{Kind: events.KindFile, Verdict: events.VerdictAudit, RuleID: 1000002, Op: op, Path: "/etc/shadow"})
	}
	for _, e := range evs {
		if err := r.Event(e); err != nil {
			t.Fatal(err)
		}
	}
	aggs := []events.Aggregate{
		{Event: evs[0], Suppressed: 10, Dropped: 2, LastNS: 5},
		{Event: evs[len(evs)-1], Dropped: 1, LastNS: 5},
		{Event: events.Event{Kind: events.KindConnect, Verdict: events.VerdictBlocked, RuleID: 40, Comm: "x"}, Unrecorded: true, Suppressed: 7},
	}
	for _, a := range aggs {
		if err := r.Aggregate(a); err != nil {
			t.Fatal(err)
		}
	}
	r.Flush()
	events.Summary{Socket: events.PathCounts{Emitted: 1}, Rules: events.Tally(nil, aggs), Unaggregated: 3}.WriteJSON(&buf)
	sandbox.Report{Rules: []sandbox.RuleReport{{ID: 1, Kind: "deny_tool", Rule: "x", Mechanism: sandbox.MechMCPRelay}}, Cgroup: "/x", CgroupID: 3}.WriteJSON(&buf)
	n := 0
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		n++
		if err := Validate(l); err != nil {
			t.Errorf("%v", err)
		}
	}
	if n != len(evs)+len(aggs)+2 || len(evs) != 14 || len(aggs) != 3 {
		t.Errorf("%d lines", n)
	}
}

// TestRejects: lines that break the contract are refused.
func TestRejects(t *testing.T) {
	good := `{"schema":1,"type":"event","time":"2026-11-26T01:02:03.456789012Z","kind":"connect","verdict":"blocked","rule_id":40,"pid":1,"tid":1,"comm":"c","cgroup_id":3,"family":"inet","protocol":"tcp","dst_addr":"10.0.0.5","dst_port":22}`
	if err := Validate([]byte(good)); err != nil {
		t.Fatalf("good line: %v", err)
	}
	for name, bad := range map[string]string{
		"no schema":        strings.Replace(good, `"schema":1,`, ``, 1),
		"schema 2":         strings.Replace(good, `"schema":1`, `"schema":2`, 1),
		"no time":          strings.Replace(good, `"time":"2026-11-26T01:02:03.456789012Z",`, ``, 1),
		"local time":       strings.Replace(good, `456789012Z`, `456789012+01:00`, 1),
		"millisecond time": strings.Replace(good, `456789012Z`, `456Z`, 1),
		"unknown field":    strings.Replace(good, `"dst_port":22`, `"dst_port":22,"x":1`, 1),
		"unknown kind":     strings.Replace(good, `"connect"`, `"bind"`, 1),
		"no rule":          strings.Replace(good, `"rule_id":40,`, ``, 1),
		"file field":       strings.Replace(good, `"dst_port":22`, `"dst_port":22,"op":"open"`, 1),
		"observed connect": strings.Replace(good, `"blocked"`, `"observed"`, 1),
		"bad mcp":          strings.Replace(good, `"dst_port":22`, `"dst_port":22,"mcp":[{"method":"tools/call","id":1}]`, 1),
		"unknown type":     `{"schema":1,"type":"what","time":"2026-11-26T01:02:03.456789012Z"}`,
		"not json":         `{"schema":1,`,
	} {
		if err := Validate([]byte(bad)); err == nil {
			t.Errorf("%s: %s validated", name, bad)
		}
	}
}
