package session

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestCheckPaths: the unprivileged check refuses what Compile refuses
// without the kernel: missing paths, a slash on a file, two paths of one
// file, procfs files whose inode numbers the kernel does not keep (a
// process's directory, a sysctl file); registered procfs entries are
// accepted.
func TestCheckPaths(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/f"
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(f, dir+"/hardlink"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ paths, want string }{
		{f + ", " + dir + "/", ""},
		{dir + "/missing", "does not exist"},
		{f + "/", "ends with / but is not a directory"},
		{"/proc/cpuinfo, /proc/sys/", ""},
		{"/proc/1/", "is on proc, where only the root and the entries the kernel registers"},
		{"/proc/sys/kernel/cap_last_cap", "sysctl files under /proc/sys/ get new numbers"},
		{f + ", " + dir + "/hardlink", dir + "/hardlink is the same file as rule 1 (a hard link or bind mount); keep one rule"},
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

// TestCompileSameInode: two policy paths of one file, a hard link or a bind
// mount of it, are refused by Compile (with the kernel's identities) and
// by CheckPaths, naming the rule of the first path; a hard link to another
// file is not the same file.
func TestCompileSameInode(t *testing.T) {
	testenv.Privileged(t)
	dir := t.TempDir()
	f, other := filepath.Join(dir, "f"), filepath.Join(dir, "other")
	for _, p := range []string{f, other} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hard := filepath.Join(dir, "hard")
	if err := os.Link(f, hard); err != nil {
		t.Fatal(err)
	}
	bind := filepath.Join(dir, "bind")
	if err := os.WriteFile(bind, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(f, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bind, unix.MNT_DETACH)
	for _, c := range []struct{ second, want string }{
		{hard, hard + " is the same file as rule 7"},
		{bind, bind + " is the same file as rule 7"},
		{other, ""},
	} {
		p, err := policy.Parse("p.yaml", []byte(fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n    - {path: %s, id: 8}\n", f, c.second)))
		if err != nil {
			t.Fatal(err)
		}
		_, cerr := Compile(p)
		perr := CheckPaths(p)
		for what, err := range map[string]error{"Compile": cerr, "CheckPaths": perr} {
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("%s with %s: %v, want %q", what, c.second, err, c.want)
			}
		}
	}
}
