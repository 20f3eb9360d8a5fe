//go:build vmtest

package lsm_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"golang.org/x/sys/unix"
)

// TestContainerOverlayRoot: `assay monitor --container` on a container made
// the way a runtime makes one — an overlay root, entered with a new mount
// namespace and pivot_root, its processes in their own cgroup. The guest
// has no container engine, so a stand-in `podman` on PATH answers `podman
// inspect` with the container's init pid (the engine's only part); the
// paths of the policy exist only inside the container, are resolved there
// (/proc/PID/root), and the rules hold for processes entering it (nsenter,
// like `podman exec`).
func TestContainerOverlayRoot(t *testing.T) {
	base := t.TempDir()
	lower, upper, work, merged := base+"/lower", base+"/upper", base+"/work", base+"/merged"
	for _, d := range []string{lower + "/bin", lower + "/etc", lower + "/old", upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lower+"/bin/busybox", bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "sleep", "umount"} {
		os.Symlink("busybox", lower+"/bin/"+a)
	}
	writeFile(t, lower+"/etc/secret", "container secret")
	writeFile(t, lower+"/srv/keys/id", "key")
	writeFile(t, lower+"/etc/open", "open")
	if err := unix.Mount("overlay", merged, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })

	// The container's init: a new mount namespace, pivot_root into the
	// overlay and the old root detached, then sleep (every step execs, so
	// the pid stays the one started here). The guest's root is the
	// initramfs, where pivot_root(2) is refused (EINVAL): there it does
	// what runc does without pivot_root, moving the overlay onto / and
	// chrooting into it.
	cg := assaytest.NewCgroup(t)
	cgf, err := cg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer cgf.Close()
	script := fmt.Sprintf("mount --make-rprivate / && cd %s || exit 1\n"+
		"if pivot_root . old 2>/dev/null; then exec /bin/sh -c 'cd / && umount -l /old && exec sleep 600'; fi\n"+
		"mount --move . / && exec chroot . /bin/sleep 600", merged)
	initCmd := exec.Command("/bin/unshare", "-m", "/bin/sh", "-c", script)
	initCmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgf.Fd())}
	if err := initCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { initCmd.Process.Kill(); initCmd.Wait() })
	pid := initCmd.Process.Pid
	// Wait until the init is in its new root.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/secret", pid)); err == nil && string(b) == "container secret" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's init did not pivot into its root")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat("/etc/secret"); err == nil {
		t.Fatal("/etc/secret exists outside the container: the test would prove nothing")
	}

	// The engine stand-in.
	bin := t.TempDir()
	stub := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = inspect ] || exit 1\nfor a; do last=$a; done\n[ \"$last\" = mcp-fs ] || { echo \"Error: no such container $last\" >&2; exit 125; }\nprintf 'c0ffee0123456789\\t%d\\tmcp-fs\\ttrue\\n'\n", pid)
	if err := os.WriteFile(bin+"/podman", []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))

	pol := writePolicy(t, "version: 1\nfiles:\n  deny:\n    - {path: /etc/secret, id: 40}\n    - {path: /srv/keys/, id: 41}\n")
	m := assaytest.StartMonitor(t, "monitor", "--container", "mcp-fs", "--policy", pol, "--output", "json")
	enter := func(path string) (string, error) {
		c := exec.Command("/bin/nsenter", "-t", fmt.Sprint(pid), "-m", "-r", "/bin/cat", path)
		c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgf.Fd())}
		out, err := c.CombinedOutput()
		return string(out), err
	}
	if out, err := enter("/etc/secret"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("cat /etc/secret in the container: %v %q, want EPERM", err, out)
	}
	if out, err := enter("/srv/keys/id"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("cat /srv/keys/id in the container: %v %q, want EPERM", err, out)
	}
	if out, err := enter("/etc/open"); err != nil || out != "open" {
		t.Errorf("cat /etc/open in the container: %v %q", err, out)
	}
	m.WaitEvents(2, eventTimeout)
	res := m.Stop()
	ids := map[uint32]string{}
	for _, e := range res.Events {
		ids[e.RuleID] = e.RulePath
		if e.CgroupID != cg.ID {
			t.Errorf("event from cgroup %d, want the container's %d", e.CgroupID, cg.ID)
		}
	}
	if len(res.Events) != 2 || ids[40] != "/etc/secret" || ids[41] != "/srv/keys" {
		t.Errorf("events %v, want rules 40 and 41", res.EventLines)
	}
	if !strings.Contains(res.StderrText(), "policy paths resolved inside it") {
		t.Errorf("stderr:\n%s", res.StderrText())
	}
}
