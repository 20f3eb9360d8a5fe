package kernel

import (
	"os"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/testenv"
)

// TestAttachAllOrNothing: attachment is all or nothing (README). Three
// scope cgroups, the last removed after the load: the socket programs
// attach to the first two, then fail on the third, and Attach detaches
// what it had attached: no program is left on the first two cgroups, the
// instance holds no link. The control, the same three scopes all present,
// attaches one program at each socket attach point of each.
func TestAttachAllOrNothing(t *testing.T) {
	testenv.Privileged(t)
	load := func(scopes ...cgroup.Scope) *Instance {
		t.Helper()
		cfg := Config{Rules: Rules{DenyPorts: map[uint16]uint32{9: 1}}, Trace: true}
		for _, s := range scopes {
			cfg.Scopes = append(cfg.Scopes, Scope{Path: s.Path, ID: s.ID, Level: s.Level})
		}
		inst, err := Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	a, b, c := assaytest.NewCgroup(t), assaytest.NewCgroup(t), assaytest.NewCgroup(t)

	ctl := load(a, b, c)
	if err := ctl.Attach(); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, s := range []cgroup.Scope{a, b, c} {
		assaytest.RequireProgramCount(t, s, 1)
	}
	ctl.Close()
	for _, s := range []cgroup.Scope{a, b, c} {
		assaytest.RequireDetached(t, s)
	}

	inst := load(a, b, c)
	defer inst.Close()
	if err := os.Remove(c.Path); err != nil {
		t.Fatal(err)
	}
	err := inst.Attach()
	if err == nil {
		t.Fatal("Attach succeeded with a scope cgroup removed")
	}
	t.Logf("Attach: %v", err)
	if n := inst.Links(); n != 0 {
		t.Errorf("the instance holds %d links after a failed Attach, want 0", n)
	}
	assaytest.RequireDetached(t, a)
	assaytest.RequireDetached(t, b)
}
