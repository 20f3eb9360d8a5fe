package run_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/testenv"
)

var doctorNames = []string{"kernel", "privileges", "btf", "cgroup2", "bpffs", "lsm-list", "bpf-lsm", "cgroup-sock-addr", "ringbuf", "landlock"}

// doctor runs `assay doctor ARGS...` and returns its stdout and exit
// status. It also checks that this doctor process left none of the cgroups
// its sock_addr probe creates (assay-doctor-PID-*) behind. The check is by
// pid, not a glob over every assay-doctor-* cgroup: other test packages run
// doctors concurrently, and their probe cgroups exist while they run.
func doctor(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(assaytest.Binary(t), append([]string{"doctor"}, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	err := cmd.Wait()
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	// The pid cannot name another doctor's cgroups: it stays ours until
	// the process is reaped (by Wait above), and this check follows at once.
	mount, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(mount, "assay-doctor-"+strconv.Itoa(pid)+"-*")); len(left) > 0 {
		t.Errorf("doctor (pid %d) left cgroups behind: %q", pid, left)
	}
	return stdout.String(), status
}

func TestDoctor(t *testing.T) {
	testenv.Privileged(t)
	full := lsmWorks()
	out, status := doctor(t)
	if full && status != 0 || !full && status != 1 {
		t.Errorf("status %d with BPF LSM usable=%v\n%s", status, full, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(doctorNames)+1 {
		t.Fatalf("%d lines, want one per check and a verdict:\n%s", len(lines), out)
	}
	line := regexp.MustCompile(`^(missing \(optional\)|ok|missing)\s+(\S+)\s+(.*)$`)
	for i, name := range doctorNames {
		m := line.FindStringSubmatch(lines[i])
		if m == nil || m[2] != name {
			t.Errorf("line %d %q: want the %s check", i, lines[i], name)
			continue
		}
		switch {
		case name == "bpf-lsm" && !full:
			if m[1] != "missing" || !strings.Contains(m[3], "(EPERM)") || !strings.Contains(m[3], "to fix:") {
				t.Errorf("BPF LSM line %q: want missing with EPERM and what to do", lines[i])
			}
		case name == "bpffs" || name == "lsm-list" && !full:
			// bpffs is optional (not mounted at boot here); the LSM list
			// may lack bpf where BPF LSM does not work.
		default:
			if m[1] != "ok" {
				t.Errorf("%s: %q, want ok", name, lines[i])
			}
		}
	}

	out, status2 := doctor(t, "--output", "json")
	if status2 != status {
		t.Errorf("--output json: status %d, text said %d", status2, status)
	}
	var rep struct {
		Type            string `json:"type"`
		FullEnforcement bool   `json:"full_enforcement"`
		FileRules       string `json:"file_rules"`
		Checks          []struct {
			Name, Status, Detail, Errno, Fix string
			Required                         bool
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Type != "doctor" || rep.FullEnforcement != full || len(rep.Checks) != len(doctorNames) {
		t.Errorf("JSON report %+v", rep)
	}
	for i, c := range rep.Checks {
		if c.Name != doctorNames[i] {
			t.Errorf("check %d is %q, want %q", i, c.Name, doctorNames[i])
		}
		if c.Name == "bpf-lsm" && !full && (c.Status != "missing" || c.Errno != "EPERM" || !c.Required || c.Fix == "") {
			t.Errorf("bpf-lsm check %+v", c)
		}
	}
	// When bpf is already in the LSM list, the advice is not to boot with
	// it there but names the lockdown mode and the other causes.
	lsms, _ := kernel.ActiveLSMs()
	if !full && slices.Contains(lsms, "bpf") {
		for _, c := range rep.Checks {
			switch c.Name {
			case "bpf-lsm":
				if strings.Contains(c.Fix, "boot with `bpf`") || !strings.Contains(c.Fix, "already in the active LSM list") ||
					(kernel.Lockdown() != "" && !strings.Contains(c.Fix, "lockdown mode is "+kernel.Lockdown())) {
					t.Errorf("bpf-lsm advice with bpf listed: %q", c.Fix)
				}
			case "lsm-list":
				if mode := kernel.Lockdown(); mode != "" && !strings.Contains(c.Detail, "(lockdown: "+mode+")") {
					t.Errorf("lsm-list does not report lockdown %q: %q", mode, c.Detail)
				}
			}
		}
	}
	if !full && rep.FileRules != "landlock" {
		t.Errorf("file_rules %q, want landlock (the fallback)", rep.FileRules)
	}
}
