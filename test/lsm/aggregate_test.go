//go:build vmtest

package lsm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestFileFloodCannotHide: a flood of denied opens of one file makes the
// rate limit (1 event per second per cgroup) suppress nearly all of them;
// one denied open of another file right after is still reported — as an
// event, or in an aggregate line naming its dev, ino, op and rule path
// with its count — and so is every suppressed open of the flood; the
// summary counts them per rule. BPF LSM, in the guest.
func TestFileFloodCannotHide(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "a")
	writeFile(t, b, "b")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 21}\n    - {path: %s, id: 22}\n", a, b))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json", "--rate-limit", "1")

	stop := filepath.Join(dir, "stop")
	flood := assaytest.StartProbe(t, &cg, "open-until", stop, a)
	m.WaitEvents(1, eventTimeout)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fr := flood.Wait()
	if fr.Other != 0 || fr.N == 0 {
		t.Fatalf("flood: %d opens, %d EPERM, %d other (%q)", fr.Attempts, fr.N, fr.Other, fr.Err)
	}
	ob := assaytest.Probe(t, &cg, "open", b, "r")
	wantBlocked(t, ob, "the other file")
	res := m.Stop()

	for _, c := range []struct {
		path string
		rule uint32
		n    uint64
	}{{a, 21, uint64(fr.N)}, {b, 22, 1}} {
		dev, ino := identity(t, c.path)
		var evs, agg uint64
		for _, e := range res.Events {
			if e.RuleID == c.rule {
				evs++
			}
		}
		for _, x := range res.Aggregates {
			if x.RuleID != c.rule {
				continue
			}
			if x.Kind != "file" || x.Verdict != "blocked" || x.Dev == nil || *x.Dev != dev || x.Ino == nil || *x.Ino != ino ||
				x.Op != "open" || x.RulePath != c.path || x.CgroupID != cg.ID || x.Count != x.Suppressed+x.Dropped {
				t.Errorf("aggregate %+v; want file %s (dev %d ino %d) op open cgroup %d", x, c.path, dev, ino, cg.ID)
			}
			agg += x.Count
		}
		t.Logf("%s: %d opens, %d events, %d in aggregates", c.path, c.n, evs, agg)
		if evs+agg != c.n {
			t.Errorf("%s: the operator saw %d events + %d aggregated, want exactly the %d opens", c.path, evs, agg, c.n)
		}
		var rc uint64
		for _, r := range res.Summary.Rules {
			if r.RuleID == c.rule {
				rc = r.Suppressed + r.Dropped
			}
		}
		if rc != agg {
			t.Errorf("summary rule %d: %d suppressed or dropped, want %d", c.rule, rc, agg)
		}
	}
	if len(res.Aggregates) == 0 {
		t.Errorf("no aggregate although the rate limit suppressed opens")
	}
	s := res.Summary.LSM
	if s.Emitted != uint64(len(res.Events)) || s.Emitted+s.Suppressed+s.Dropped != uint64(fr.N)+1 {
		t.Errorf("summary LSM %+v: %d events, %d opens", s, len(res.Events), fr.N+1)
	}
}
