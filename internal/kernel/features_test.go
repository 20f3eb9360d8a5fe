package kernel

import "testing"

func TestReleaseAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{
		"6.18.44-fc-v669": true, "6.1.0-56-cloud-amd64": true, "5.8.0": true, "5.7.19": false,
		"4.19.0": false, "5.10": true, "5": false, "x.y": false, "5.8rc1": true, "": false,
	} {
		if got := ReleaseAtLeast(rel, 5, 8); got != want {
			t.Errorf("ReleaseAtLeast(%q, 5, 8) = %v, want %v", rel, got, want)
		}
	}
}

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality\n": "none",
		"none integrity [confidentiality]":   "confidentiality",
		"":                                   "",
	} {
		if got := parseLockdown(in); got != want {
			t.Errorf("parseLockdown(%q) = %q, want %q", in, got, want)
		}
	}
}
