// Package container_test runs `assay monitor --container` against a real
// Podman container on this host: the container's cgroup is found through
// podman's CLI and its network rules are enforced there. The image is
// built offline from a static busybox (`podman import`), the container has
// no network but its own loopback, and it runs with Debian's runc (crun
// refuses the hybrid cgroup layout of these machines). Root and podman are
// needed (CI=true turns a skip into a failure).
//
//	CI=true go test ./test/container/ -count=1 -v
package container_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
)

func TestMain(m *testing.M) { assaytest.Main(m) }

const (
	image   = "localhost/assay-test-busybox:1"
	runtime = "/usr/sbin/runc"
)

// podman runs podman with args (bounded in time) and returns its stdout.
func podman(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--runtime", runtime}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

// requirePodman fails (CI) or skips without root, podman or runc.
func requirePodman(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("podman"); err != nil {
		missing = "podman (apt-get install podman runc)"
	} else if _, err := os.Stat(runtime); err != nil {
		missing = runtime + " (apt-get install runc)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs %s", missing)
	}
	t.Skipf("needs %s", missing)
}

// busyboxImage imports a one-binary image (static busybox and its applet
// links) unless it exists.
func busyboxImage(t *testing.T) {
	t.Helper()
	if _, err := podman(t, "image", "exists", image); err == nil {
		return
	}
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Fatalf("static busybox: %v (apt-get install busybox-static)", err)
	}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "nc", "cat", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "secret"), []byte("in the image"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "root.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if _, err := podman(t, "import", tarball, image); err != nil {
		t.Fatal(err)
	}
}

// startContainer runs a container that sleeps; it is removed at cleanup.
func startContainer(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("assay-test-%d", time.Now().UnixNano())
	if _, err := podman(t, "run", "-d", "--name", name, "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", image, "sleep", "600"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := podman(t, "rm", "-f", "-t", "0", name); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	return name
}

// TestContainerNetwork: `assay monitor --container NAME` finds the
// container through podman and judges its cgroup: a process started in it
// with `podman exec` is refused a denied port (on the container's own
// loopback) with an event, and an allowed port gets the ordinary answer
// (connection refused: nothing listens).
func TestContainerNetwork(t *testing.T) {
	requirePodman(t)
	busyboxImage(t)
	name := startContainer(t)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 5}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := assaytest.StartMonitor(t, "monitor", "--container", name, "--policy", pol, "--output", "json")
	out, err := podman(t, "exec", name, "nc", "127.0.0.1", "9")
	if err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("nc to the denied port: %v (stdout %q), want EPERM", err, out)
	}
	_, err = podman(t, "exec", name, "nc", "127.0.0.1", "10")
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("nc to another port: %v, want connection refused", err)
	}
	m.WaitEvents(1, 20*time.Second)
	res := m.Stop()
	if len(res.Events) != 1 || res.Events[0].RuleID != 5 || res.Events[0].DstPort != 9 {
		t.Errorf("events %v, want one for port 9 under rule 5", res.EventLines)
	}
	if !strings.Contains(res.StderrText(), "podman container "+name) {
		t.Errorf("stderr does not name the container:\n%s", res.StderrText())
	}
}

// TestContainerPaths: policy paths are resolved inside the container (a
// path that exists only in the image resolves; one only on the host does
// not), and --paths host resolves them on the host. Enforcement of file
// rules needs BPF LSM (test/lsm); here the monitor's refusal on a kernel
// without it, or its start, shows how far resolution went.
func TestContainerPaths(t *testing.T) {
	requirePodman(t)
	busyboxImage(t)
	name := startContainer(t)
	hostOnly := filepath.Join(t.TempDir(), "host-only")
	if err := os.WriteFile(hostOnly, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf("version: 1\nfiles:\n  deny: [%s]\n", hostOnly)), 0o600)
	r := assaytest.Run(t, "monitor", "--container", name, "--policy", pol, "--duration", "1s")
	if r.ExitCode == 0 || !strings.Contains(r.StderrText(), "does not exist") {
		t.Errorf("a host-only path resolved inside the container: status %d\n%s", r.ExitCode, r.StderrText())
	}
	r = assaytest.Run(t, "monitor", "--container", name, "--paths", "host", "--policy", pol, "--duration", "1s")
	if strings.Contains(r.StderrText(), "does not exist") {
		t.Errorf("--paths host did not resolve on the host:\n%s", r.StderrText())
	}
	os.WriteFile(pol, []byte("version: 1\nfiles:\n  deny: [/etc/secret]\n"), 0o600)
	r = assaytest.Run(t, "monitor", "--container", name, "--policy", pol, "--duration", "1s")
	if strings.Contains(r.StderrText(), "does not exist") {
		t.Errorf("/etc/secret of the image did not resolve inside the container:\n%s", r.StderrText())
	}
}
