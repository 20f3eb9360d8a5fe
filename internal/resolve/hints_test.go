package resolve

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestProcSelfSymlink: a symlink into /proc/self (such as /etc/mtab) is
// refused with the target as the link means it, not this process's
// /proc/PID.
func TestProcSelfSymlink(t *testing.T) {
	d := t.TempDir()
	for link, target := range map[string]string{"abs": "/proc/self/mounts", "chain": "/proc/mounts", "thread": "/proc/thread-self/comm"} {
		p := filepath.Join(d, link)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		_, err := Path(p)
		if !errors.Is(err, ErrSymlink) {
			t.Fatalf("%s: %v, want ErrSymlink", link, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "it resolves to /proc/") || !strings.Contains(msg, "a different file for every process") ||
			strings.Contains(msg, "/proc/"+strconv.Itoa(os.Getpid())) {
			t.Errorf("%s: %s", link, msg)
		}
	}
}

// TestGlobHint: a pattern is taken literally; when nothing has that name,
// the error says patterns are unsupported and what to write instead.
func TestGlobHint(t *testing.T) {
	d := t.TempDir()
	_, err := Path(d + "/keys/*.pem")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `patterns ("*") are not supported`) ||
		!strings.Contains(err.Error(), "trailing slash ("+d+"/keys/)") {
		t.Errorf("glob: %v", err)
	}
	// A file literally named with a metacharacter is a path like any other.
	lit := filepath.Join(d, "a[1]")
	if err := os.WriteFile(lit, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Path(lit); err != nil {
		t.Errorf("literal %s: %v", lit, err)
	}
}
