package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestMonitorUnits: --duration takes a bare number of seconds or a unit,
// --ring-size a binary unit; a monitor so configured runs and stops by
// itself. A ring size that is no power of two is refused in one line.
func TestMonitorUnits(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, netPolicy)
	for _, c := range []struct{ duration, ring string }{{"1", "1M"}, {"1s", "64KiB"}} {
		start := time.Now()
		res := assaytest.Run(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--duration", c.duration, "--ring-size", c.ring)
		if res.ExitCode != 0 || !hasPrefix(res.Stderr, "assay: enforcing "+pol) {
			t.Errorf("--duration %s --ring-size %s: exit %d:\n%s", c.duration, c.ring, res.ExitCode, res.StderrText())
		}
		if el := time.Since(start); el < time.Second {
			t.Errorf("--duration %s: stopped after %v", c.duration, el)
		}
	}
	res := assaytest.Run(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--duration", "1", "--ring-size", "100K")
	if res.ExitCode != 1 || len(res.Stderr) != 1 || !strings.Contains(res.Stderr[0], "must be a power of two") {
		t.Errorf("--ring-size 100K: exit %d:\n%s", res.ExitCode, res.StderrText())
	}
	assaytest.RequireDetached(t, cg)
}
