// Package assaytest is the support code shared by Assay's privileged test
// suites: the host end-to-end tests (test/e2e) and the BPF-LSM guest suite
// (test/lsm). It runs the real assay binary against real cgroups and real
// sockets; nothing in it mocks the kernel.
//
// A test package using it must route its TestMain through [Main], so that
// the test binary can re-execute itself as a probe process ([Probe]) that
// acts from inside a cgroup:
//
//	func TestMain(m *testing.M) { assaytest.Main(m) }
package assaytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/testenv"
)

// ModulePath is the module whose ./cmd/assay [Binary] builds.
const ModulePath = "github.com/assaymcp/assay"

// Privileged is [testenv.Privileged]: it skips a test that needs root, or
// fails it under CI.
func Privileged(t testing.TB) {
	t.Helper()
	testenv.Privileged(t)
}

var binary struct {
	once sync.Once
	path string
	dir  string // build directory, removed by Main
	err  error
}

// Binary returns the path of the assay binary under test: $ASSAY_BIN when
// set, else ./cmd/assay of this module, built once per test process into a
// temporary directory (removed when [Main] returns).
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if p := os.Getenv("ASSAY_BIN"); p != "" {
			binary.path, binary.err = filepath.Abs(p)
			if binary.err == nil {
				_, binary.err = os.Stat(binary.path)
			}
			return
		}
		binary.path, binary.dir, binary.err = build()
	})
	if binary.err != nil {
		t.Fatalf("assay binary: %v", binary.err)
	}
	return binary.path
}

func build() (path, dir string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	gobin, err := goTool()
	if err != nil {
		return "", "", err
	}
	dir, err = os.MkdirTemp("", "assaytest-bin-")
	if err != nil {
		return "", "", err
	}
	// Readable and executable by everyone: tests run it as an unprivileged
	// user too.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	path = filepath.Join(dir, "assay")
	cmd := exec.Command(gobin, "build", "-o", path, "./cmd/assay")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("go build ./cmd/assay in %s: %v\n%s", root, err, out.Bytes())
	}
	return path, dir, nil
}

// goTool finds the go command on PATH (go test puts its own GOROOT/bin
// first there).
func goTool() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("no go command on PATH: set ASSAY_BIN to a built assay binary")
	}
	return p, nil
}

// ModuleRoot walks up from the working directory (a package directory,
// under go test) to the go.mod of [ModulePath].
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(mod) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory: set ASSAY_BIN to a built assay binary", ModulePath)
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// NewCgroup creates a fresh leaf cgroup "assay-test-<hex>" directly under
// the cgroup2 mount and removes it (killing anything left in it) when the
// test ends.
func NewCgroup(t testing.TB) cgroup.Scope {
	t.Helper()
	mnt, err := cgroup.Mount()
	if err != nil {
		t.Fatalf("cgroup2 mount: %v", err)
	}
	s, err := cgroup.CreateLeaf(mnt, "assay-test")
	if err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cgroup.Remove(s); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return s
}

// Main is the TestMain of a package using assaytest: in a probe process
// (ASSAY_PROBE set) it runs the probe and exits; otherwise it runs the
// tests, removes the binary [Binary] built, and exits.
func Main(m *testing.M) {
	os.Exit(RunMain(m))
}

// RunMain is [Main] for a TestMain with more to do: it runs the probe or
// the tests, removes the binary it built, and returns the exit status.
func RunMain(m *testing.M) int {
	if action := os.Getenv(probeEnv); action != "" {
		return runProbe(action, os.Args[1:])
	}
	if os.Getenv(noLandlockEnv) != "" {
		return execWithoutLandlock(os.Args[1:])
	}
	tmpBefore, _ := os.Stat(os.TempDir())
	code := m.Run()
	// A test must leave the machine's temporary directory as it found it
	// (a chmod 0755 of /tmp once broke apt for everything after it).
	if tmpAfter, err := os.Stat(os.TempDir()); err == nil && tmpBefore != nil && tmpAfter.Mode() != tmpBefore.Mode() {
		fmt.Fprintf(os.Stderr, "FAIL: the tests changed the mode of %s from %v to %v\n", os.TempDir(), tmpBefore.Mode(), tmpAfter.Mode())
		os.Chmod(os.TempDir(), tmpBefore.Mode())
		code = 1
	}
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	if public.dir != "" {
		os.RemoveAll(public.dir)
	}
	return code
}

var public struct {
	once      sync.Once
	dir, path string
	err       error
}

// PublicExecutable returns a copy of this test binary that any user can
// execute (go test's own directory is 0700): `assay run` starts its
// command as an unprivileged user. Removed when [Main] returns.
func PublicExecutable(t testing.TB) string {
	t.Helper()
	public.once.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			public.err = err
			return
		}
		data, err := os.ReadFile(exe)
		if err != nil {
			public.err = err
			return
		}
		if public.dir, public.err = os.MkdirTemp("", "assaytest-exe-"); public.err != nil {
			return
		}
		if public.err = os.Chmod(public.dir, 0o755); public.err != nil {
			return
		}
		public.path = filepath.Join(public.dir, filepath.Base(exe))
		public.err = os.WriteFile(public.path, data, 0o755)
	})
	if public.err != nil {
		t.Fatalf("public copy of the test binary: %v", public.err)
	}
	return public.path
}

// PublicDir lets every user enter and read dir and its parent (commands
// under test run as nobody), by adding r-x for group and others to their
// modes. It only adds: a parent such as /tmp keeps its sticky bit and its
// write permission for all (setting 0755, as it once did, took them from
// /tmp when dir was directly below it, and apt, which writes there as
// _apt, failed for the rest of the machine's life).
func PublicDir(t testing.TB, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		keep := fi.Mode() & (os.ModePerm | os.ModeSticky | os.ModeSetgid | os.ModeSetuid)
		if err := os.Chmod(d, keep|0o055); err != nil {
			t.Fatal(err)
		}
	}
}
