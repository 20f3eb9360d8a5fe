// Package install_test checks `make install`: the layout it writes under
// DESTDIR and PREFIX, and the version stamp of the installed binary.
//
//	go test ./test/install/
package install_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if ci := os.Getenv("CI"); ci != "" && ci != "0" && ci != "false" {
				t.Fatalf("CI: %s is missing", tool)
			}
			t.Skipf("%s is missing", tool)
		}
	}
}

// TestMakeInstall: `make install DESTDIR=D PREFIX=/usr VERSION=V` installs
// the binary (stamped with V), a man page per command, the bash, zsh and
// fish completions and the systemd unit pointing at the installed binary;
// `make uninstall` removes them all.
func TestMakeInstall(t *testing.T) {
	needTools(t, "make", "git")
	root := moduleRoot(t)
	dest := t.TempDir()
	const version = "v0.0.0-installtest"
	mk := func(target string) {
		t.Helper()
		cmd := exec.Command("make", "-s", target, "DESTDIR="+dest, "PREFIX=/usr", "VERSION="+version)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	mk("install")

	want := map[string]os.FileMode{
		"usr/bin/assay": 0o755,
		"usr/share/bash-completion/completions/assay":    0o644,
		"usr/share/zsh/site-functions/_assay":            0o644,
		"usr/share/fish/vendor_completions.d/assay.fish": 0o644,
		"usr/lib/systemd/system/assay-monitor@.service":  0o644,
		"usr/share/man/man1/assay.1":                     0o644,
		"usr/share/man/man1/assay-run.1":                 0o644,
		"usr/share/man/man1/assay-monitor.1":             0o644,
		"usr/share/man/man1/assay-policy-check.1":        0o644,
		"usr/share/man/man1/assay-doctor.1":              0o644,
		"usr/share/man/man1/assay-completion-bash.1":     0o644,
	}
	for rel, mode := range want {
		st, err := os.Stat(filepath.Join(dest, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if st.Mode().Perm() != mode || !st.Mode().IsRegular() || st.Size() == 0 {
			t.Errorf("%s: mode %v, size %d; want a non-empty file with mode %v", rel, st.Mode(), st.Size(), mode)
		}
	}
	// Nothing outside PREFIX.
	ents, _ := os.ReadDir(dest)
	if len(ents) != 1 || ents[0].Name() != "usr" {
		t.Errorf("DESTDIR holds %v, want only usr", ents)
	}

	bin := filepath.Join(dest, "usr/bin/assay")
	out, err := exec.Command(bin, "version").Output()
	if err != nil || string(out) != "assay "+version+"\n" {
		t.Errorf("installed assay version: %q, %v; want %q", out, err, "assay "+version)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(dest, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	unit := read("usr/lib/systemd/system/assay-monitor@.service")
	if strings.Contains(unit, "/usr/local/bin/assay") || !strings.Contains(unit, "ExecStart=/usr/bin/assay monitor --policy /etc/assay/%i.yaml $ASSAY_SCOPE --pin %i") {
		t.Errorf("the unit does not run the installed binary:\n%s", unit)
	}
	if man := read("usr/share/man/man1/assay-run.1"); !strings.Contains(man, `.TH "ASSAY" "1"`) || !strings.Contains(man, "assay "+version) || !strings.Contains(man, "Exit status") {
		t.Errorf("assay-run.1:\n%.600s", man)
	}
	if c := read("usr/share/bash-completion/completions/assay"); !strings.Contains(c, "__start_assay") {
		t.Errorf("bash completion:\n%.300s", c)
	}

	mk("uninstall")
	var left []string
	filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("make uninstall left %q", left)
	}
}

// TestVersionStamp: `make build` stamps `git describe` of the checkout.
func TestVersionStamp(t *testing.T) {
	needTools(t, "make", "git")
	root := moduleRoot(t)
	desc, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	cmd := exec.Command("make", "-s", "build")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(root, "assay"), "version").Output()
	if want := "assay " + strings.TrimSpace(string(desc)) + "\n"; err != nil || string(out) != want {
		t.Errorf("assay version: %q, %v; want %q", out, err, want)
	}
}
