package run_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// statusOf runs the "status" helper under assay with the given flags and
// environment additions and returns its lines by key, and stderr.
func (e *env) statusOf(env []string, extra []*os.File, flags ...string) (map[string]string, string) {
	e.t.Helper()
	args := append([]string{"--policy", e.policy(netPolicy)}, flags...)
	args = append(args, "--", "@", "status")
	cmd := e.command(args...)
	cmd.Env = append(withoutInvoker(cmd.Env), env...)
	cmd.ExtraFiles = extra
	out, errb := &strings.Builder{}, &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, errb
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("assay run %v: %v\n%s", flags, err, errb)
	}
	m := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		k, v, _ := strings.Cut(l, " ")
		m[k] = v
	}
	return m, errb.String()
}

// withoutInvoker drops SUDO_* and PKEXEC_UID: the default user must not
// depend on how the tests were started.
func withoutInvoker(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "SUDO_") || strings.HasPrefix(kv, "PKEXEC_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

const noCaps = "0000000000000000"

func TestRunContainsByDefault(t *testing.T) {
	e := newEnv(t)
	st, stderr := e.statusOf(nil, nil)
	want := map[string]string{
		"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "",
		"CapInh": noCaps, "CapPrm": noCaps, "CapEff": noCaps, "CapBnd": noCaps, "CapAmb": noCaps,
		"NoNewPrivs": "1", "Seccomp": "2", "fds": "0 1 2", "HOME": "/nonexistent", "USER": "nobody",
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s %q, want %q", k, st[k], v)
		}
	}
	for _, l := range []string{
		"runs as nobody:nogroup (65534:65534): assay was started as root without sudo or pkexec",
		"assay: contained: runs as user nobody (65534), group nogroup (65534); no capabilities; no_new_privs; descriptors 0, 1, 2; own PID namespace",
		"assay: contained: seccomp:",
	} {
		if !strings.Contains(stderr, l) {
			t.Errorf("stderr lacks %q:\n%s", l, stderr)
		}
	}
	if strings.Contains(stderr, "NOT CONTAINED") {
		t.Errorf("NOT CONTAINED by default:\n%s", stderr)
	}
}

func TestRunUserFromSudo(t *testing.T) {
	e := newEnv(t)
	st, stderr := e.statusOf([]string{"SUDO_UID=4242", "SUDO_GID=4343"}, nil)
	if st["Uid"] != "4242 4242 4242 4242" || st["Gid"] != "4343 4343 4343 4343" || st["CapEff"] != noCaps {
		t.Errorf("with SUDO_UID=4242 SUDO_GID=4343: %v\n%s", st, stderr)
	}
	if strings.Contains(stderr, "runs as nobody") {
		t.Errorf("the nobody note although SUDO_UID is set:\n%s", stderr)
	}
	st, _ = e.statusOf([]string{"PKEXEC_UID=4242"}, nil)
	if st["Uid"] != "4242 4242 4242 4242" || st["Gid"] != "65534 65534 65534 65534" {
		t.Errorf("with PKEXEC_UID=4242: %v", st)
	}
	st, _ = e.statusOf(nil, nil, "--user", "nobody:4343")
	if st["Uid"] != "65534 65534 65534 65534" || st["Gid"] != "4343 4343 4343 4343" {
		t.Errorf("--user nobody:4343: %v", st)
	}
}

func TestRunUserRootNotContained(t *testing.T) {
	e := newEnv(t)
	st, stderr := e.statusOf(nil, nil, "--user", "root")
	if st["Uid"] != "0 0 0 0" || st["CapEff"] != noCaps || st["CapBnd"] != noCaps || st["NoNewPrivs"] != "1" {
		t.Errorf("--user root: %v", st)
	}
	if !strings.Contains(stderr, "assay: NOT CONTAINED: runs as root (--user root)") {
		t.Errorf("stderr lacks NOT CONTAINED for root:\n%s", stderr)
	}
}

func TestRunCapsAndSeccompOff(t *testing.T) {
	e := newEnv(t)
	st, stderr := e.statusOf(nil, nil, "--cap", "net_bind_service")
	const nbs = "0000000000000400"
	if st["CapEff"] != nbs || st["CapAmb"] != nbs || st["CapBnd"] != nbs || st["CapPrm"] != nbs {
		t.Errorf("--cap net_bind_service: %v", st)
	}
	if strings.Contains(stderr, "NOT CONTAINED") || !strings.Contains(stderr, "capabilities CAP_NET_BIND_SERVICE only") {
		t.Errorf("--cap net_bind_service report:\n%s", stderr)
	}
	_, stderr = e.statusOf(nil, nil, "--cap", "net_raw")
	if !strings.Contains(stderr, "assay: NOT CONTAINED: keeps CAP_NET_RAW (--cap)") {
		t.Errorf("--cap net_raw report:\n%s", stderr)
	}
	st, stderr = e.statusOf(nil, nil, "--seccomp=off")
	if st["Seccomp"] != "0" || st["NoNewPrivs"] != "1" || !strings.Contains(stderr, "assay: NOT CONTAINED: --seccomp=off") {
		t.Errorf("--seccomp=off: %v\n%s", st, stderr)
	}
}

// TestRunDescriptors: only 0, 1, 2 and --pass-fd ones reach the command,
// whatever assay inherited (here fds 3 and 4, not close-on-exec).
func TestRunDescriptors(t *testing.T) {
	e := newEnv(t)
	f3, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer f3.Close()
	f4, err := os.Open("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	defer f4.Close()
	st, stderr := e.statusOf(nil, []*os.File{f3, f4})
	if st["fds"] != "0 1 2" {
		t.Errorf("inherited descriptors reached the command: %q\n%s", st["fds"], stderr)
	}
	st, stderr = e.statusOf(nil, []*os.File{f3, f4}, "--pass-fd", "4")
	if st["fds"] != "0 1 2 4" || !strings.Contains(stderr, "descriptors 0, 1, 2, 4;") {
		t.Errorf("--pass-fd 4: fds %q\n%s", st["fds"], stderr)
	}
	cmd := e.command("--policy", e.policy(netPolicy), "--pass-fd", "9", "--", "true")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || !strings.Contains(string(out), "--pass-fd 9: descriptor 9 is not open in assay") {
		t.Errorf("--pass-fd of a closed descriptor: %v\n%s", err, out)
	}
}
