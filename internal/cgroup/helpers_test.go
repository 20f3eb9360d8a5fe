package cgroup_test

import (
	"os"
	"testing"
)

// requirePrivileged skips a test that needs root, except under CI=true where
// a silently skipped privileged test would hide a broken environment.
func requirePrivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: privileged test cannot skip")
	}
	t.Skip("needs root (real cgroups)")
}
