package kernel

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestLSMErrorAdvice: an attach that fails with ENOTSUPP (no BPF
// trampoline on this kernel and architecture, as on arm64 before Linux 6.4)
// is explained as such, not with the lsm= or lockdown advice other
// failures get.
func TestLSMErrorAdvice(t *testing.T) {
	notsupp := lsmError("attach probe program", fmt.Errorf("create raw tracepoint: %w", ebpf.ErrNotSupported))
	if msg := notsupp.Error(); !strings.Contains(msg, "no BPF trampoline support") || strings.Contains(msg, "lsm=") || strings.Contains(msg, "LSM list") {
		t.Errorf("ENOTSUPP: %s", msg)
	}
	eperm := lsmError("attach probe program", unix.EPERM)
	if msg := eperm.Error(); strings.Contains(msg, "trampoline") || !strings.Contains(msg, "assay doctor") {
		t.Errorf("EPERM: %s", msg)
	}
	verifier := lsmError("load the file programs", fmt.Errorf("load program: %w", &ebpf.VerifierError{Cause: unix.EINVAL, Log: []string{"R0 has unknown scalar value"}}))
	if msg := verifier.Error(); !strings.Contains(msg, "verifier rejected") || strings.Contains(msg, "LSM list") || strings.Contains(msg, "hypervisor") || !strings.Contains(msg, "R0 has unknown scalar value") {
		t.Errorf("verifier: %s", msg)
	}
	var fe *FeatureError
	if !errors.As(notsupp, &fe) || !errors.Is(notsupp, ebpf.ErrNotSupported) {
		t.Errorf("ENOTSUPP: %T does not wrap the cause", notsupp)
	}
}
