package policy

import (
	"strings"
	"testing"
)

// TestDiffHosts: a host entry the old policy has no entry for is listed;
// one a wildcard of the old policy covers on the same ports is not.
func TestDiffHosts(t *testing.T) {
	oldp, err := Parse("old", []byte("version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: \"*.example.test\", ports: [443], proto: tcp}\n"))
	if err != nil {
		t.Fatal(err)
	}
	newp, err := Parse("new", []byte("version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: api.example.test, ports: [443], proto: tcp}\n    - {host: svc.test, ports: [8080], proto: tcp}\n    - {host: api.example.test, ports: [80], proto: tcp}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := Diff(oldp, newp)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, w := range ws {
		lines = append(lines, w.String())
	}
	got := strings.Join(lines, "\n")
	if len(ws) != 2 || !strings.Contains(got, "svc.test") || !strings.Contains(got, "port 80") {
		t.Errorf("diff:\n%s", got)
	}
}
