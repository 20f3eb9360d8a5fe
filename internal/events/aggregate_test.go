package events

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAggregateText(t *testing.T) {
	first := time.Date(2026, 11, 29, 17, 20, 1, 1000, time.UTC)
	last := first.Add(1500 * time.Millisecond)
	net := Aggregate{
		Event: Event{Kind: KindConnect, Verdict: VerdictBlocked, RuleID: 40, PID: 4242, TID: 4243, CgroupID: 7, Comm: "curl",
			Family: AFInet, Protocol: 6, Port: 22, Addr: netip.MustParseAddr("10.0.0.5")},
		Suppressed: 1200, Dropped: 34,
	}
	unrec := net
	unrec.Unrecorded, unrec.Addr, unrec.Port = true, netip.Addr{}, 0
	file := Aggregate{Event: Event{Kind: KindFile, Verdict: VerdictAudit, RuleID: 7, PID: 1, TID: 1, Comm: "x y", Dev: 2050, Ino: 9, Op: OpOpen}, Dropped: 1}
	for _, tc := range []struct {
		a    Aggregate
		want string
	}{
		{net, "[AGGREGATE] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=7 rule_id=40 family=inet comm=curl tid=4243 pid=4242 count=1234 suppressed=1200 dropped=34 first=2026-11-29T17:20:01.000001Z last=2026-11-29T17:20:02.500001Z"},
		{unrec, "[AGGREGATE] 🛡️ BLOCKED CONNECT: target=unrecorded cgroup=7 rule_id=40 comm=curl tid=4243 pid=4242 count=1234 suppressed=1200 dropped=34 first=2026-11-29T17:20:01.000001Z last=2026-11-29T17:20:02.500001Z"},
		{file, `[AGGREGATE] 🔎 AUDIT FILE: dev=2050 ino=9 cgroup=0 rule_id=7 op=open comm="x y" tid=1 pid=1 count=1 suppressed=0 dropped=1 first=2026-11-29T17:20:01.000001Z last=2026-11-29T17:20:02.500001Z`},
	} {
		if got := string(AppendAggregateText(nil, tc.a, first, last)); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestAggregateJSON(t *testing.T) {
	var buf bytes.Buffer
	r := NewRenderer(&buf, JSON, nil, 0)
	a := Aggregate{
		Event: Event{Kind: KindSendmsg, Verdict: VerdictBlocked, RuleID: 41, PID: 5, MonoNS: 10, Family: AFInet6, Protocol: 17,
			Port: 53, Addr: netip.MustParseAddr("::1"), Unspec: UnspecV6},
		Suppressed: 3, LastNS: 20,
	}
	unrec := a
	unrec.Unrecorded = true
	for _, x := range []Aggregate{a, unrec} {
		if err := r.Aggregate(x); err != nil {
			t.Fatal(err)
		}
	}
	r.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got = append(got, m)
	}
	if len(got) != 2 || got[0]["type"] != "aggregate" || got[0]["count"] != 3.0 || got[0]["dst_addr"] != "::1" ||
		got[0]["dst_port"] != 53.0 || got[0]["requested_addr"] != "::" || got[0]["rule_id"] != 41.0 || got[0]["time"] != got[0]["last_time"] {
		t.Errorf("aggregate: %s", lines[0])
	}
	if _, ok := got[1]["dst_addr"]; ok || got[1]["target_unrecorded"] != true || got[1]["rule_id"] != 41.0 {
		t.Errorf("unrecorded aggregate: %s", lines[1])
	}
}

func TestTally(t *testing.T) {
	rules := Tally(nil, []Aggregate{
		{Event: Event{RuleID: 9}, Suppressed: 2},
		{Event: Event{RuleID: 3}, Dropped: 1},
		{Event: Event{RuleID: 9}, Suppressed: 1, Dropped: 4},
	})
	rules = Tally(rules, []Aggregate{{Event: Event{RuleID: 3}, Suppressed: 5}})
	want := []RuleCounts{{3, 5, 1}, {9, 3, 4}}
	if len(rules) != 2 || rules[0] != want[0] || rules[1] != want[1] {
		t.Errorf("got %+v, want %+v", rules, want)
	}
}
