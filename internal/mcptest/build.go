package mcptest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// Environment variables naming prebuilt binaries (the vmtest guest has no
// Go toolchain: test/vm/run.sh builds them and test/vm/init.sh sets these).
const (
	ServerBinEnv = "ASSAY_MCP_TESTSERVER" // ./internal/mcptest/cmd/mcp-testserver
	AssayBinEnv  = "ASSAY_BIN"            // ./cmd/assay (as assaytest.Binary)
)

// ServerPackage is the package of the test server binary.
const ServerPackage = "./internal/mcptest/cmd/mcp-testserver"

var builds struct {
	mu   sync.Mutex
	dir  string // removed by Main
	bins map[string]built
}

type built struct {
	path string
	err  error
}

// Main is the TestMain of a package using ServerBinary or AssayBinary
// without assaytest.Main: it runs the tests, removes what they built and
// exits.
func Main(m *testing.M) {
	code := m.Run()
	builds.mu.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.mu.Unlock()
	os.Exit(code)
}

// ServerBinary returns the mcp-testserver binary: $ASSAY_MCP_TESTSERVER when
// set, else built once per test process (static, CGO_ENABLED=0) into a
// temporary directory that Main removes.
func ServerBinary(t testing.TB) string {
	t.Helper()
	return binary(t, ServerBinEnv, ServerPackage, "mcp-testserver")
}

// AssayBinary returns the assay binary: $ASSAY_BIN when set, else ./cmd/assay
// built once per test process into the directory Main removes. (Packages
// whose TestMain is assaytest.Main use assaytest.Binary instead.)
func AssayBinary(t testing.TB) string {
	t.Helper()
	return binary(t, AssayBinEnv, "./cmd/assay", "assay")
}

func binary(t testing.TB, env, pkg, name string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.bins == nil {
		builds.bins = map[string]built{}
	}
	b, ok := builds.bins[pkg]
	if !ok {
		b.path, b.err = locate(env, pkg, name)
		builds.bins[pkg] = b
	}
	if b.err != nil {
		t.Fatalf("%s: %v", name, b.err)
	}
	return b.path
}

func locate(env, pkg, name string) (string, error) {
	if p := os.Getenv(env); p != "" {
		p, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %v", env, err)
		}
		return p, nil
	}
	root, err := assaytest.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("%v (or set $%s)", err, env)
	}
	// go test puts its own GOROOT/bin first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command on PATH to build %s: set $%s", pkg, env)
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "mcptest-bin-")
		if err != nil {
			return "", err
		}
		// Readable and executable by everyone, like assaytest's builds.
		if err := os.Chmod(dir, 0o755); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		builds.dir = dir
	}
	out := filepath.Join(builds.dir, name)
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %v\n%s", pkg, root, err, log.Bytes())
	}
	return out, nil
}
