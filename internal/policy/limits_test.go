package policy

import (
	"strings"
	"testing"
)

func TestLimits(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  memory: 512M\n  pids: 256\n  cpu: 0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits != (Limits{Memory: 512 << 20, Pids: 256, CPU: 0.5}) {
		t.Errorf("limits %+v", p.Limits)
	}
	p, err = Parse("p.yaml", []byte("version: 1\nlimits:\n  memory: 1048576\n  cpu: 2\n"))
	if err != nil || p.Limits != (Limits{Memory: 1 << 20, CPU: 2}) {
		t.Errorf("limits %+v, %v", p.Limits, err)
	}
	for text, want := range map[string]string{
		"limits:\n  memory: 1K\n":    "p.yaml:3: limits.memory: \"1K\": give bytes",
		"limits:\n  memory: 0x10M\n": "p.yaml:3: limits.memory: \"0x10M\"",
		"limits:\n  memory: -5\n":    "p.yaml:3: limits.memory: ",
		"limits:\n  pids: 0\n":       "p.yaml:3: limits.pids: 0 is outside 1-4194304",
		"limits:\n  pids: \"5\"\n":   "p.yaml:3: limits.pids: ",
		"limits:\n  cpu: 0.001\n":    "p.yaml:3: limits.cpu: \"0.001\": give a number of cores",
		"limits:\n  cpu: [1]\n":      "p.yaml:3: limits.cpu: ",
		"limits:\n  threads: 1\n":    "p.yaml:3: limits.threads: unknown field",
		"limits: 5\n":                "p.yaml:2: limits: ",
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+text))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	if _, err := Parse("p.yaml", []byte("version: 1\nlimits:\n")); err != nil {
		t.Errorf("an empty limits section: %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"1": 1, "2K": 2048, "3m": 3 << 20, "4G": 4 << 30} {
		if v, ok := ParseBytes(s); !ok || v != want {
			t.Errorf("%q: %d %v, want %d", s, v, ok, want)
		}
	}
	for _, s := range []string{"", "K", "0", "01", "-1", "1.5G", "1T", "99999999999G"} {
		if v, ok := ParseBytes(s); ok {
			t.Errorf("%q: %d accepted", s, v)
		}
	}
}
