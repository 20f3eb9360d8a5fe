// Package testenv decides, in one place, what Assay's tests may do when the
// machine lacks something they need: outside CI they skip; under CI a
// missing privilege, kernel feature or tool fails the test, because a
// silently skipped test would hide a broken environment.
//
// CI is detected from the CI environment variable, as CI services set it:
// any value but empty, "0" and "false" (in any case) counts.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run under CI: $CI is set to anything but
// "", "0" or "false".
func CI() bool {
	v := strings.TrimSpace(os.Getenv("CI"))
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// Privileged skips a test that needs root (it loads BPF programs, creates
// cgroups, mounts), or fails it under CI.
func Privileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	Skip(t, "needs root (loads BPF programs, creates cgroups)")
}

// Skip skips a test whose environment lacks something (a tool, a kernel
// feature, a privilege), or fails it under CI, with the reason.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=%s: this test cannot skip: %s", os.Getenv("CI"), reason)
	}
	t.Skip(reason)
}

// Skipf is Skip with a format.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}

// LookPath returns the path of a tool the test needs, skipping (or, under
// CI, failing) the test when it is not on PATH.
func LookPath(t testing.TB, tool, why string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Skipf(t, "%s is not on PATH (%s): %v", tool, why, err)
	}
	return p
}
