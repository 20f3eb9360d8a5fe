package session

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/policy"
)

// TestCheckPaths: the unprivileged check refuses what Compile refuses
// without the kernel: missing paths, a slash on a file, procfs.
func TestCheckPaths(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/f"
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ paths, want string }{
		{f + ", " + dir + "/", ""},
		{dir + "/missing", "does not exist"},
		{f + "/", "ends with / but is not a directory"},
		{"/proc/cpuinfo", "is on a proc filesystem (magic 0x9fa0)"},
	} {
		p, err := policy.Parse("p.yaml", []byte(fmt.Sprintf("version: 1\nfiles:\n  deny: [%s]\n", c.paths)))
		if err != nil {
			t.Fatal(err)
		}
		err = CheckPaths(p)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.paths, err, c.want)
		}
	}
}
