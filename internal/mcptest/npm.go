package mcptest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

// The reference filesystem server from npm, pinned. The whole dependency
// tree is pinned, with integrity hashes, by internal/mcptest/npm/
// package-lock.json; `npm ci` installs exactly that. To move the pin: edit
// package.json, run `npm install --package-lock-only --ignore-scripts` in
// internal/mcptest/npm, and update NodeFilesystemVersion.
const (
	NodeFilesystemPackage = "@modelcontextprotocol/server-filesystem"
	NodeFilesystemVersion = "2026.8.31"
	NodeMinMajor          = 20 // the oldest Node.js the pinned tree supports (glob: "18 || 20 || >=22", @hono/node-server: ">=20")
	nodeFilesystemBin     = "mcp-server-filesystem"
	npmSpecDir            = "internal/mcptest/npm" // package.json + package-lock.json
	npmCacheDir           = ".cache/npm"           // under the module root (gitignored)
	npmInstallTimeout     = 5 * time.Minute
)

// NodeTools returns the paths of node and npm. Missing ones skip the test,
// except under CI=true, where they fail it: CI must run the Node.js tests.
func NodeTools(t testing.TB) (node, npm string) {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	npm, err = exec.LookPath("npm")
	if err != nil {
		missing = append(missing, "npm")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not on PATH: the reference MCP servers need Node.js 20 or later with npm", strings.Join(missing, " and "))
		testenv.Skip(t, msg)
	}
	return node, npm
}

// NodeFilesystemServer installs the pinned reference filesystem server, once
// (with `npm ci --ignore-scripts` from the committed lockfile into
// .cache/npm/fs-<hash of the lockfile>), and returns node's path and the
// server's entry point: run `NODE SCRIPT ROOT...`.
func NodeFilesystemServer(t testing.TB) (node, script string) {
	t.Helper()
	node, npm := NodeTools(t)
	dir, err := installNPM(npm)
	if err != nil {
		t.Fatalf("installing %s@%s: %v", NodeFilesystemPackage, NodeFilesystemVersion, err)
	}
	return node, NodeFilesystemScript(t, dir)
}

// NodeFilesystemScript returns the entry point of the pinned filesystem
// server installed in dir (holding node_modules), checking its version.
func NodeFilesystemScript(t testing.TB, dir string) string {
	t.Helper()
	pkgDir := filepath.Join(dir, "node_modules", filepath.FromSlash(NodeFilesystemPackage))
	var pkg struct {
		Version string            `json:"version"`
		Bin     map[string]string `json:"bin"`
		Engines map[string]string `json:"engines"`
	}
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		t.Fatalf("%s: %v", pkgDir, err)
	}
	if pkg.Version != NodeFilesystemVersion {
		t.Fatalf("%s is version %s, want %s (stale cache? remove %s)", pkgDir, pkg.Version, NodeFilesystemVersion, dir)
	}
	rel := pkg.Bin[nodeFilesystemBin]
	if rel == "" {
		t.Fatalf("%s/package.json has no bin %q: %v", pkgDir, nodeFilesystemBin, pkg.Bin)
	}
	return filepath.Join(pkgDir, filepath.FromSlash(rel))
}

// installNPM makes sure the lockfile's tree is installed and returns its
// directory. Concurrent test processes serialize on a lock file.
func installNPM(npm string) (string, error) {
	root, err := assaytest.ModuleRoot()
	if err != nil {
		return "", err
	}
	spec := filepath.Join(root, npmSpecDir)
	var files [][]byte
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(spec, name))
		if err != nil {
			return "", err
		}
		files = append(files, b)
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	cache := filepath.Join(root, npmCacheDir)
	dir := filepath.Join(cache, "fs-"+hex.EncodeToString(h.Sum(nil))[:16])
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}

	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("flock %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(done); err == nil {
		return dir, nil // another process installed it meanwhile
	}

	stage := dir + ".tmp"
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return "", err
	}
	for i, name := range []string{"package.json", "package-lock.json"} {
		if err := os.WriteFile(filepath.Join(stage, name), files[i], 0o644); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmInstallTimeout)
	defer cancel()
	// ci: exactly the lockfile (integrity-checked), never an update;
	// --ignore-scripts: no install scripts run as root on CI.
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = stage
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v", npmInstallTimeout)
		}
		return "", fmt.Errorf("npm ci in %s: %v\n%s", stage, err, out.Bytes())
	}
	if err := os.WriteFile(filepath.Join(stage, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(stage, dir); err != nil {
		return "", err
	}
	// Drop installs of older lockfiles.
	old, _ := filepath.Glob(filepath.Join(cache, "fs-*"))
	for _, o := range old {
		if o != dir {
			os.RemoveAll(o)
		}
	}
	return dir, nil
}
