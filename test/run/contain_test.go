package run_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
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

// forkBomb starts 100 background sleeps (a bounded fork bomb) and prints
// what the cgroup says: pids.current and the pids.events "max" count.
const forkBomb = `m=$(grep cgroup2 /proc/self/mountinfo | head -1 | cut -d' ' -f5); cg=$m$(grep '^0::' /proc/self/cgroup | cut -d: -f3)
sh -c 'i=0; while [ $i -lt 100 ]; do sleep 20 & i=$((i+1)); done' 2>/dev/null
read cur < $cg/pids.current; read max < $cg/pids.max; echo current $cur max $max
while read k v; do [ "$k" = max ] && echo max $v; done < $cg/pids.events
read mem < $cg/memory.max; read cpu < $cg/cpu.max; echo memory $mem cpu $cpu`

// TestRunLimits: --pids, --memory, --cpu and the policy's limits section
// reach the command's cgroup, and a fork bomb stays within pids.max. Where
// the controllers are not in cgroup v2 (this project's hosts keep them on
// v1 hierarchies), assay refuses to start and says why; the fork bomb then
// runs in the BPF LSM guest (test/lsm TestRunForkBomb), which is pure v2.
func TestRunLimits(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile(e.parent.Path + "/cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	have := strings.Fields(string(data))
	hasPids := false
	for _, c := range have {
		hasPids = hasPids || c == "pids"
	}
	pol := e.policy(netPolicy + "limits:\n  pids: 20\n")
	cmd := e.command("--policy", pol, "--", "sh", "-c", forkBomb)
	cmd.Env = withoutInvoker(cmd.Env)
	out, err := cmd.CombinedOutput()
	if !hasPids {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 ||
			!strings.Contains(string(out), "assay: resource limits: the pids controller is not available in cgroup v2 at "+e.parent.Path+": ") {
			t.Fatalf("without the pids controller in cgroup v2: %v\n%s", err, out)
		}
		t.Logf("as expected here: %s", strings.TrimSpace(string(out)))
		return
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var cur, max, hits int
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "current ") {
			fmt.Sscanf(l, "current %d max %d", &cur, &max)
		}
		if strings.HasPrefix(l, "max ") {
			fmt.Sscanf(l, "max %d", &hits)
		}
	}
	if max != 20 || cur > 20 || hits == 0 {
		t.Errorf("pids.max %d, pids.current %d, refused forks %d: want 20, at most 20, some\n%s", max, cur, hits, out)
	}
}

// TestRunLimitsPolicyErrors: the limits section is checked like the rest of
// the policy (file:line: field: message).
func TestRunLimitsPolicyErrors(t *testing.T) {
	e := newEnv(t)
	for text, want := range map[string]string{
		"limits:\n  pids: 0\n":     ":6: limits.pids: 0 is outside 1-",
		"limits:\n  memory: 12X\n": ":6: limits.memory: \"12X\": give bytes",
		"limits:\n  cpu: fast\n":   ":6: limits.cpu: ",
		"limits:\n  swap: 1\n":     ":6: limits.swap: ",
	} {
		r := e.run(nil, "--policy", e.policy(netPolicy+text), "--", "true")
		if r.status != 125 || !strings.Contains(r.stderr, want) {
			t.Errorf("%q: status %d, stderr %q, want 125 and %q", text, r.status, r.stderr, want)
		}
	}
}

// TestRunKeepsIgnoredSignals: a signal assay inherited as ignored (nohup)
// stays ignored for the command; the others get their default action,
// although assay's init ignores them.
func TestRunKeepsIgnoredSignals(t *testing.T) {
	e := newEnv(t)
	run := func(trap string) uint64 {
		t.Helper()
		args := []string{"-c", trap + `exec "$@"`, "sh", assaytest.Binary(t), "run", "--cgroup-parent", e.parent.Path, "--policy", e.policy(netPolicy), "--", helperBin, "status"}
		cmd := exec.Command("sh", args...)
		cmd.Env = append(withoutInvoker(os.Environ()), "ASSAY_RUN_HELPER=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v", err)
		}
		var mask uint64
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "SigIgn "); ok {
				fmt.Sscanf(v, "%x", &mask)
			}
		}
		return mask
	}
	const hup, intr, term = 1 << 0, 1 << 1, 1 << 14
	if m := run(""); m&(hup|intr|term) != 0 {
		t.Errorf("SigIgn %x: SIGHUP, SIGINT or SIGTERM ignored by the command", m)
	}
	if m := run("trap '' HUP; "); m&hup == 0 || m&(intr|term) != 0 {
		t.Errorf("with SIGHUP ignored for assay: SigIgn %x, want SIGHUP only", m)
	}
}
