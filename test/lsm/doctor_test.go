//go:build vmtest

package lsm_test

import (
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestDoctorFullEnforcement: with BPF LSM active, `assay doctor` reports
// every check ok and exits 0.
func TestDoctorFullEnforcement(t *testing.T) {
	res := assaytest.Run(t, "doctor")
	out := strings.Join(res.Stdout, "\n")
	t.Logf("assay doctor in the guest:\n%s", out)
	if res.ExitCode != 0 {
		t.Fatalf("doctor exit %d, want 0:\n%s\n%s", res.ExitCode, out, res.StderrText())
	}
	for _, l := range res.Stdout {
		if strings.HasPrefix(l, "missing") {
			t.Errorf("missing check: %s", l)
		}
	}
	if !strings.Contains(out, "bpf-lsm") {
		t.Errorf("no bpf-lsm line:\n%s", out)
	}
}
