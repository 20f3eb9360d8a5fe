package events

import "testing"

// A file event judged in user space from a traced open (policy v2 under
// Landlock) names the path, quoted like a trace path when it needs to be.
func TestFileEventPath(t *testing.T) {
	cases := []struct {
		e    Event
		want string
	}{
		{Event{Kind: KindFile, Verdict: VerdictBlocked, RuleID: 1000002, PID: 7, TID: 8, Comm: "cat", Op: OpOpen, Path: "/etc/shadow"},
			`[PID 7] 🛡️ BLOCKED FILE: dev=0 ino=0 cgroup=0 rule_id=1000002 op=open path=/etc/shadow comm=cat tid=8`},
		{Event{Kind: KindFile, Verdict: VerdictAudit, RuleID: 3, PID: 7, TID: 7, Comm: "sh", Op: OpOpen, Path: "/tmp/a b\n[PID 1]"},
			`[PID 7] 🔎 AUDIT FILE: dev=0 ino=0 cgroup=0 rule_id=3 op=open path="/tmp/a b\n[PID 1]" comm=sh tid=7`},
	}
	for _, c := range cases {
		if got := string(AppendText(nil, c.e)); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}
