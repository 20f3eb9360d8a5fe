package events

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// Aggregate is the evidence for enforcement events that were not emitted
// one by one — suppressed by the rate limit or dropped because the ring
// buffer was full — counted in the kernel per cgroup, rule and target
// (destination, or file and operation). Every distinct one reaches the
// operator as one line, however large the flood.
type Aggregate struct {
	// Event carries the kind, verdict, rule, cgroup and target, and the
	// first occurrence's PID, TID, Comm and time (MonoNS).
	Event
	// Unrecorded: the target is not known (the kernel's table of distinct
	// targets was full); only the cgroup and rule are.
	Unrecorded bool
	Suppressed uint64 // over the cgroup's --rate-limit
	Dropped    uint64 // the ring buffer was full
	LastNS     uint64 // CLOCK_MONOTONIC of the last occurrence
}

// Count is how many events the aggregate stands for.
func (a Aggregate) Count() uint64 { return a.Suppressed + a.Dropped }

// AggregatePrefix starts every text aggregate line.
const AggregatePrefix = "[AGGREGATE] "

// AppendAggregateText appends the operator line of an aggregate (without
// newline, and without the timestamp of its last occurrence the renderer
// writes before it): the event's own line with "[AGGREGATE]" in place of "[PID n]",
// then pid (the first occurrence's), the counts and the times of the first
// and last occurrence:
//
//	[AGGREGATE] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet comm=curl tid=4242 pid=4242 count=1234 suppressed=1200 dropped=34 first=2026-11-29T17:20:01.000001Z last=2026-11-29T17:20:02.500001Z
//	[AGGREGATE] 🛡️ BLOCKED CONNECT: target=unrecorded cgroup=4026532987 rule_id=40 comm=curl tid=4242 pid=4242 count=7 suppressed=7 dropped=0 first=… last=…
func AppendAggregateText(b []byte, a Aggregate, first, last time.Time) []byte {
	b = append(b, AggregatePrefix...)
	e := a.Event
	if a.Unrecorded {
		switch e.Verdict {
		case VerdictBlocked:
			b = append(b, "🛡️ "...)
		case VerdictAudit:
			b = append(b, "🔎 "...)
		}
		b = append(b, Label(e)...)
		b = append(b, ": target=unrecorded"...)
		b = appendCommon(b, e)
		b = append(b, " comm="...)
		b = appendValue(b, e.Comm)
		b = append(b, " tid="...)
		b = strconv.AppendUint(b, uint64(e.TID), 10)
	} else {
		line := AppendText(nil, e)
		// Drop the "[PID n] " the event line starts with.
		for i := range line {
			if line[i] == ']' && i+1 < len(line) {
				line = line[i+2:]
				break
			}
		}
		b = append(b, line...)
	}
	b = append(b, " pid="...)
	b = strconv.AppendUint(b, uint64(e.PID), 10)
	b = append(b, " count="...)
	b = strconv.AppendUint(b, a.Count(), 10)
	b = append(b, " suppressed="...)
	b = strconv.AppendUint(b, a.Suppressed, 10)
	b = append(b, " dropped="...)
	b = strconv.AppendUint(b, a.Dropped, 10)
	b = append(b, " first="...)
	b = first.UTC().AppendFormat(b, TextTime)
	b = append(b, " last="...)
	b = last.UTC().AppendFormat(b, TextTime)
	return b
}

// JSONAggregate is the --output json form of an aggregate: the event's
// fields (type "aggregate", time the last occurrence's) and the counts.
type JSONAggregate struct {
	JSONEvent
	Count            uint64 `json:"count"`
	Suppressed       uint64 `json:"suppressed"`
	Dropped          uint64 `json:"dropped"`
	FirstTime        string `json:"first_time"`
	LastTime         string `json:"last_time"`
	TargetUnrecorded bool   `json:"target_unrecorded,omitempty"`
}

// ToJSONAggregate converts an aggregate to its JSON form.
func (r *Renderer) ToJSONAggregate(a Aggregate) JSONAggregate {
	j := JSONAggregate{
		JSONEvent: r.ToJSON(a.Event), Count: a.Count(), Suppressed: a.Suppressed, Dropped: a.Dropped,
		FirstTime:        r.wall(a.MonoNS).UTC().Format(JSONTime),
		LastTime:         r.wall(a.LastNS).UTC().Format(JSONTime),
		TargetUnrecorded: a.Unrecorded,
	}
	j.Type, j.Time = "aggregate", j.LastTime
	if a.Unrecorded {
		j.Family, j.Protocol, j.DstAddr, j.DstPort, j.MappedIPv4, j.RequestedAddr = "", "", "", 0, false, ""
		j.Dev, j.Ino, j.Op = nil, nil, ""
	}
	return j
}

// Aggregate writes one aggregate line.
func (r *Renderer) Aggregate(a Aggregate) error {
	var line []byte
	if r.format == JSON {
		var err error
		if line, err = json.Marshal(r.ToJSONAggregate(a)); err != nil {
			return err
		}
	} else {
		// Dated like an event line, by the last occurrence.
		line = r.wall(a.LastNS).UTC().AppendFormat(nil, TextTime)
		line = append(line, ' ')
		line = AppendAggregateText(line, a, r.wall(a.MonoNS), r.wall(a.LastNS))
	}
	_, err := r.w.Write(append(line, '\n'))
	return err
}

// RuleCounts are the events of one rule that were not emitted one by one.
type RuleCounts struct {
	RuleID     uint32 `json:"rule_id"`
	Suppressed uint64 `json:"suppressed"`
	Dropped    uint64 `json:"dropped"`
}

// Tally adds aggregates to per-rule counts (sorted by rule id).
func Tally(rules []RuleCounts, aggs []Aggregate) []RuleCounts {
	idx := map[uint32]int{}
	for i, rc := range rules {
		idx[rc.RuleID] = i
	}
	for _, a := range aggs {
		i, ok := idx[a.RuleID]
		if !ok {
			i = len(rules)
			idx[a.RuleID] = i
			rules = append(rules, RuleCounts{RuleID: a.RuleID})
		}
		rules[i].Suppressed += a.Suppressed
		rules[i].Dropped += a.Dropped
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].RuleID < rules[j].RuleID })
	return rules
}
