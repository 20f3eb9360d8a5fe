package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestCI(t *testing.T) {
	for v, want := range map[string]bool{
		"": false, "0": false, "false": false, "FALSE": false, "False": false, " false ": false,
		"true": true, "1": true, "yes": true, "TRUE": true, "woodpecker": true,
	} {
		t.Setenv("CI", v)
		if got := CI(); got != want {
			t.Errorf("CI=%q: CI() = %v, want %v", v, got, want)
		}
	}
	os.Unsetenv("CI")
	if CI() {
		t.Error("CI unset: CI() = true")
	}
}

// TestSkipUnderCI runs this test binary again with TESTENV_HELPER set, so
// that the skip happens in a test of its own, and checks its verdict: a
// skip outside CI, a failure naming the reason under CI.
func TestSkipUnderCI(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") == "1" {
		Skip(t, "no frobnicator")
		return
	}
	for _, c := range []struct {
		ci   string
		fail bool
		want string
	}{
		{"", false, "--- SKIP: TestSkipUnderCI"},
		{"false", false, "--- SKIP: TestSkipUnderCI"},
		{"1", true, "CI=1: this test cannot skip: no frobnicator"},
		{"true", true, "CI=true: this test cannot skip: no frobnicator"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkipUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_HELPER=1", "CI="+c.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != c.fail || !strings.Contains(string(out), c.want) {
			t.Errorf("CI=%q: failed %v (%v), want %v with %q; output:\n%s", c.ci, failed, err, c.fail, c.want, out)
		}
	}
}
