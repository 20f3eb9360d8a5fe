package mcp_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/mcptest"
)

// TestNodeFilesystemServerV2 runs, started by node and by npx, the reference filesystem server from npm
// under a least-privilege version 2 policy (default deny, the runtime
// baseline, the projects root rw, the server's own code r) on the host,
// where Landlock enforces it, driven by the Go SDK client: read, write,
// edit, create_directory, move, search and list inside the projects root
// work (the Landlock fallback of version 1 made them fail), and a file in
// a second root the server serves but the policy does not allow is
// refused by the kernel (EACCES), for reading and writing, each with a
// BLOCKED FILE event.
func TestNodeFilesystemServerV2(t *testing.T) {
	assaytest.Privileged(t)
	node, script := mcptest.NodeFilesystemServer(t)
	assay := mcptest.AssayBinary(t)
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Fatal("npx is needed (Node.js with npm)")
	}
	t.Run("node", func(t *testing.T) {
		filesV2(t, assay, script, false, nil, func(code, root, outside string) []string { return []string{node, script, root, outside} })
	})
	// With --mcp the refusals' events name the tools/call that caused
	// them (tool and request id), as the relay saw it.
	t.Run("node-mcp", func(t *testing.T) {
		filesV2(t, assay, script, true, nil, func(code, root, outside string) []string { return []string{node, script, root, outside} })
	})
	// npx finds the pinned install's bin (no network: --offline, and no
	// update check); npm writes its logs under HOME, which the policy
	// allows (with version 1's Landlock fallback npx could not create
	// ~/.npm).
	t.Run("npx", func(t *testing.T) {
		home := t.TempDir()
		assaytest.PublicDir(t, home)
		os.Chown(home, 65534, 65534)
		env := append(os.Environ(), "HOME="+home, "npm_config_update_notifier=false")
		filesV2(t, assay, script, false, []string{home}, func(code, root, outside string) []string {
			return []string{"/bin/sh", "-c", `cd "$0" && exec "$1" --offline mcp-server-filesystem "$2" "$3"`, code, npx, root, outside}
		}, env...)
	})
}

func filesV2(t *testing.T, assay, script string, mcp bool, rw []string, server func(code, root, outside string) []string, env ...string) {
	mcptest.FilesV2Scenario(t, mcptest.FilesV2Config{
		Assay: assay, Code: mcptest.NodeFilesystemCode(script), Server: server, MCP: mcp, RW: rw, Env: env,
	})
}
