//go:build vmtest

package lsm_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestLinkRenameEvents: the inode_link and inode_rename programs refuse, in
// scope, a new name for a protected file and a move into or out of a
// protected subtree, and each refusal is reported by the kernel as a file
// event with op "link" or "rename", the rule's id and the probe's pid. Out
// of scope the same move works.
func TestLinkRenameEvents(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	protected := filepath.Join(dir, "protected")
	inside := filepath.Join(protected, "inside")
	plain := filepath.Join(dir, "plain")
	writeFile(t, secret, "s3cret")
	writeFile(t, inside, "in")
	writeFile(t, plain, "plain")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n    - {path: %s/, id: 9}\n", secret, protected))
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json")

	cases := []struct {
		what   string
		action string
		from   string
		to     string
		op     string
		rule   uint32
	}{
		{"link(2) of a protected file", "link", secret, filepath.Join(dir, "alias"), "link", 7},
		{"rename(2) of a protected file", "rename", secret, filepath.Join(dir, "moved"), "rename", 7},
		{"move into a protected subtree", "rename", plain, filepath.Join(protected, "planted"), "rename", 9},
		{"move out of a protected subtree", "rename", inside, filepath.Join(dir, "taken"), "rename", 9},
	}
	pids := make([]int, len(cases))
	for i, c := range cases {
		r := assaytest.Probe(t, &cg, c.action, c.from, c.to)
		wantBlocked(t, r, c.what)
		pids[i] = r.PID
	}
	// Outside the scope the same move goes through.
	wantOpened(t, assaytest.Probe(t, nil, "rename", plain, filepath.Join(protected, "planted")), "move into the subtree outside the scope")

	m.WaitEvents(len(cases), eventTimeout)
	res := m.Stop()
	for i, c := range cases {
		evs := fileEvents(res, pids[i])
		if len(evs) != 1 {
			t.Errorf("%s: %d file events from pid %d, want 1: %+v", c.what, len(evs), pids[i], evs)
			continue
		}
		e := evs[0]
		if e.Op != c.op || e.RuleID != c.rule || e.Verdict != "blocked" {
			t.Errorf("%s: event op=%q rule_id=%d verdict=%q, want op=%q rule_id=%d blocked", c.what, e.Op, e.RuleID, e.Verdict, c.op, c.rule)
		}
	}
}
