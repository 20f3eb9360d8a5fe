//go:build vmtest

package lsm_test

// Reliability of file-rule enforcement (the host counterparts, for network
// rules, are in test/reliability): a pinned instance outlives its monitor,
// live reloads never leave an open unjudged, and a reload of a pinned
// instance that brings the first file rules keeps them after `assay
// reload` exits.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
)

// relPinName returns a fresh instance name; whatever is pinned under it is
// detached when the test ends.
func relPinName(t *testing.T) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "vmrel-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(kernel.PinRoot, name)); err == nil {
			t.Logf("instance %s still pinned at the end of the test: detaching it", name)
			assaytest.Run(t, "detach", name)
		}
	})
	return name
}

// relStatus returns the `assay status --output json` entry of name.
func relStatus(t *testing.T, name string) map[string]any {
	t.Helper()
	res := assaytest.Run(t, "status", "--output", "json")
	if res.ExitCode != 0 || len(res.Stdout) != 1 {
		t.Fatalf("assay status --output json: status %d, stderr:\n%s", res.ExitCode, res.StderrText())
	}
	var st struct {
		Instances []map[string]any `json:"instances"`
	}
	if err := json.Unmarshal([]byte(res.Stdout[0]), &st); err != nil {
		t.Fatal(err)
	}
	for _, in := range st.Instances {
		if in["name"] == name {
			return in
		}
	}
	return nil
}

func relWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func relEventsOf(evs []events.JSONEvent, pid int) []events.JSONEvent {
	var out []events.JSONEvent
	for _, e := range evs {
		if int(e.PID) == pid {
			out = append(out, e)
		}
	}
	return out
}

// TestPinFileRuleOutlivesMonitor: a pinned instance with a file rule keeps
// refusing the open after its monitor is SIGKILLed; `assay status` lists
// it; `assay monitor --attach` delivers the events of the opens refused
// while no monitor ran; `assay detach` lets the open through again.
func TestPinFileRuleOutlivesMonitor(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "credentials.txt")
	writeFile(t, secret, "s3cret")
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: 7}\n", secret))
	name := relPinName(t)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--pin", name, "--output", "json")
	wantBlocked(t, assaytest.Probe(t, &cg, "open", secret, "r"), "pinned, monitor running")
	m.WaitEvents(1, eventTimeout)

	m.Signal(syscall.SIGKILL)
	m.Wait(assaytest.StopTimeout)
	rd := assaytest.Probe(t, &cg, "open", secret, "r")
	wantBlocked(t, rd, "read after SIGKILL of the monitor")
	wr := assaytest.Probe(t, &cg, "open", secret, "w")
	wantBlocked(t, wr, "write after SIGKILL of the monitor")
	out := assaytest.Probe(t, nil, "open", secret, "r")
	wantOpened(t, out, "read outside the scope")
	st := relStatus(t, name)
	if st == nil || st["rules"] != float64(1) || st["monitor_alive"] != false || st["policy"] != pol {
		t.Errorf("status: %v", st)
	}

	a := assaytest.StartMonitor(t, "monitor", "--attach", name, "--output", "json")
	a.WaitEvents(2, eventTimeout)
	ares := a.Stop()
	dev, ino := identity(t, secret)
	for _, pr := range []assaytest.ProbeResult{rd, wr} {
		evs := relEventsOf(ares.Events, pr.PID)
		if len(evs) != 1 || evs[0].Kind != "file" || evs[0].RuleID != 7 || evs[0].Dev == nil || *evs[0].Dev != dev || *evs[0].Ino != ino || evs[0].CgroupID != cg.ID {
			t.Errorf("--attach: events of pid %d: %+v; want one file event, rule 7", pr.PID, evs)
		}
	}
	if s := ares.Summary.LSM; s.Emitted != 3 || s.Dropped != 0 {
		t.Errorf("--attach summary LSM %+v, want emitted=3 since the pin", s)
	}

	det := assaytest.Run(t, "detach", name)
	if det.ExitCode != 0 {
		t.Fatalf("detach: %s", det.StderrText())
	}
	after := assaytest.Probe(t, &cg, "open", secret, "r")
	wantOpened(t, after, "read in scope after detach")
	if after.Out != "s3cret" {
		t.Errorf("read after detach: %q", after.Out)
	}
}

// vmReloads is how many swaps the guest's reload test makes per variant.
// The pinned variant makes fewer: each `assay reload` is a new process that
// parses the BPF object and loads the identity iterator (about 13 s under
// TCG), and the swap it drives is the same one SIGHUP drives; its swaps
// still cover both directions, a refused reload in the middle, and a full
// check of the files only one policy denies after the last one.
const (
	vmReloads       = 20
	vmReloadsPinned = 4
)

// TestReloadFileRulesUnderLoad: the policy is swapped vmReloads times
// (vmReloadsPinned for a pinned instance), alternating A and B, which both
// deny a file under different rule ids, while a probe opens it in a loop:
// every open is refused. After each swap a probe in a second scope cgroup
// opens it and gets the new policy's rule id; every tenth swap and after
// the last, the files only one policy denies are checked. A refused reload
// (invalid YAML; a file rule whose path does not exist) leaves the policy
// in force. Variants: SIGHUP to the monitor, and `assay reload` on a pinned
// instance whose monitor was killed.
func TestReloadFileRulesUnderLoad(t *testing.T) {
	for _, pin := range []bool{false, true} {
		name := "sighup"
		if pin {
			name = "pinned"
		}
		t.Run(name, func(t *testing.T) { reloadFilesUnderLoad(t, pin) })
	}
}

func reloadFilesUnderLoad(t *testing.T, pin bool) {
	dir := t.TempDir()
	secret, onlyA, onlyB := filepath.Join(dir, "secret"), filepath.Join(dir, "only-a"), filepath.Join(dir, "only-b")
	for _, f := range []string{secret, onlyA, onlyB} {
		writeFile(t, f, "x")
	}
	const idSA, idA, idSB, idB = 11, 12, 21, 22
	polA := fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: %d}\n    - {path: %s, id: %d}\n", secret, idSA, onlyA, idA)
	polB := fmt.Sprintf("version: 1\nfiles:\n  deny:\n    - {path: %s, id: %d}\n    - {path: %s, id: %d}\n", secret, idSB, onlyB, idB)
	fileA, fileB, live := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "policy.yaml")
	relWrite(t, fileA, polA)
	relWrite(t, fileB, polB)
	relWrite(t, live, polA)
	hammerCG := assaytest.NewCgroup(t)
	checkCG := assaytest.NewCgroup(t)

	// The hammer's cgroup may emit 100 events a second: the rest of its
	// refusals are counted as suppressed (the accounting below covers
	// them), and the monitor has far fewer lines to write and the test to
	// read under TCG. The checks run in their own cgroup, with a budget of
	// their own, so none of their events is suppressed.
	args := []string{"monitor", "--policy", live, "--cgroup", hammerCG.Path, "--cgroup", checkCG.Path, "--output", "json", "--rate-limit", "100"}
	instance := ""
	if pin {
		instance = relPinName(t)
		args = append(args, "--pin", instance)
	}
	m := assaytest.StartMonitor(t, args...)
	if pin {
		m.Signal(syscall.SIGKILL)
		m.Wait(assaytest.StopTimeout)
		m = assaytest.StartMonitor(t, "monitor", "--attach", instance, "--output", "json")
	}
	stop := filepath.Join(dir, "stop")
	hammer := assaytest.StartProbe(t, &hammerCG, "open-until", stop, secret)
	for deadline := time.Now().Add(eventTimeout); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(stop + ".ready"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hammer did not start")
		}
	}

	type check struct {
		pid  int
		rule uint32
		what string
	}
	var checks []check
	probe := func(path string, rule uint32, what string) {
		t.Helper()
		r := assaytest.Probe(t, &checkCG, "open", path, "r")
		if rule == 0 {
			wantOpened(t, r, what)
			return
		}
		wantBlocked(t, r, what)
		checks = append(checks, check{r.PID, rule, what})
	}
	verify := func(cur string, all bool) {
		t.Helper()
		if cur == "A" {
			probe(secret, idSA, "the file both deny, under A")
			if all {
				probe(onlyA, idA, "the file only A denies, under A")
				probe(onlyB, 0, "the file only B denies, under A")
			}
			return
		}
		probe(secret, idSB, "the file both deny, under B")
		if all {
			probe(onlyB, idB, "the file only B denies, under B")
			probe(onlyA, 0, "the file only A denies, under B")
		}
	}
	reloaded, refused := 0, 0
	reload := func(text, file string) {
		t.Helper()
		if !pin {
			relWrite(t, live, text)
			m.Signal(syscall.SIGHUP)
			reloaded++
			m.WaitStderr("assay: reloaded "+live, reloaded, eventTimeout)
			return
		}
		if res := assaytest.Run(t, "reload", instance, "--policy", file); res.ExitCode != 0 {
			t.Fatalf("assay reload: status %d, stderr:\n%s", res.ExitCode, res.StderrText())
		}
	}
	refuse := func(what, text string) {
		t.Helper()
		if !pin {
			relWrite(t, live, text)
			m.Signal(syscall.SIGHUP)
			refused++
			lines := m.WaitStderr("assay: reload refused, the previous policy stays in force: ", refused, eventTimeout)
			t.Logf("%s: %s", what, lines[len(lines)-1])
			return
		}
		bad := filepath.Join(dir, "refused.yaml")
		relWrite(t, bad, text)
		res := assaytest.Run(t, "reload", instance, "--policy", bad)
		if res.ExitCode != 1 || !strings.HasPrefix(res.StderrText(), "assay: reload refused, the previous policy stays in force: ") {
			t.Fatalf("%s: assay reload: status %d (want 1), stderr:\n%s", what, res.ExitCode, res.StderrText())
		}
		t.Logf("%s: %s", what, res.StderrText())
	}

	n := vmReloads
	if pin {
		n = vmReloadsPinned
	}
	cur := "A"
	verify(cur, true)
	begin := time.Now()
	for i := 1; i <= n; i++ {
		if i == n/2 {
			refuse("invalid YAML", "version: 1\nfiles: [\n")
			refuse("a path that does not exist", fmt.Sprintf("version: 1\nfiles:\n  deny: [%s]\n", filepath.Join(dir, "missing")))
			verify(cur, true)
		}
		if cur == "A" {
			cur = "B"
			reload(polB, fileB)
		} else {
			cur = "A"
			reload(polA, fileA)
		}
		verify(cur, i%10 == 0 || i == n)
	}
	elapsed := time.Since(begin)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := hammer.Wait()
	t.Logf("hammer: %d opens in %.1fs (%.0f/s) across %d reloads", h.Attempts, elapsed.Seconds(), float64(h.Attempts)/elapsed.Seconds(), n)
	if h.Attempts == 0 || h.Other != 0 || h.N != h.Attempts {
		t.Errorf("hammer: %d opens, %d EPERM, %d other (last %q %q): want every one refused", h.Attempts, h.N, h.Other, h.Errno, h.Err)
	}
	m.WaitEvents(len(checks), eventTimeout)
	res := m.Stop()
	for _, c := range checks {
		evs := relEventsOf(res.Events, c.pid)
		if len(evs) != 1 || evs[0].RuleID != c.rule || evs[0].Kind != "file" {
			t.Errorf("%s: events of pid %d: %+v; want one file event with rule %d", c.what, c.pid, evs, c.rule)
		}
	}
	byRule := map[uint32]int{}
	for _, e := range res.Events {
		if int(e.PID) == hammer.Pid() {
			byRule[e.RuleID]++
		}
	}
	s := res.Summary.LSM
	denied := uint64(h.N + len(checks))
	t.Logf("hammer events by rule id: %v; summary LSM emitted=%d dropped=%d suppressed=%d for %d refused opens", byRule, s.Emitted, s.Dropped, s.Suppressed, denied)
	if s.Emitted+s.Dropped+s.Suppressed != denied || s.Emitted != uint64(len(res.EventLines)) {
		t.Errorf("accounting: emitted %d + dropped %d + suppressed %d != %d refused opens, or emitted != %d event lines", s.Emitted, s.Dropped, s.Suppressed, denied, len(res.EventLines))
	}
	if pin {
		if det := assaytest.Run(t, "detach", instance); det.ExitCode != 0 {
			t.Errorf("detach: %s", det.StderrText())
		}
	}
	wantOpened(t, assaytest.Probe(t, &hammerCG, "open", secret, "r"), "after the monitor stopped")
}

// TestPinnedReloadAddsFileRules: a pinned, network-only instance gets its
// first file rule by a reload, either `assay reload` (its monitor killed
// first) or SIGHUP to its monitor (killed afterwards). The file programs
// the reload loads and attaches must be pinned with the rest: once the
// process that reloaded has exited the open is still refused, and `assay
// detach` removes all 7 links.
func TestPinnedReloadAddsFileRules(t *testing.T) {
	for _, how := range []string{"assay-reload", "sighup"} {
		t.Run(how, func(t *testing.T) { pinnedReloadAddsFileRules(t, how == "sighup") })
	}
}

func pinnedReloadAddsFileRules(t *testing.T, sighup bool) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "s3cret")
	cg := assaytest.NewCgroup(t)
	live := filepath.Join(dir, "policy.yaml")
	netOnly := "version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 1}]\n"
	withFiles := fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 1}]\nfiles:\n  deny: [{path: %s, id: 7}]\n", secret)
	relWrite(t, live, netOnly)
	name := relPinName(t)
	m := assaytest.StartMonitor(t, "monitor", "--policy", live, "--cgroup", cg.Path, "--pin", name)
	if !sighup {
		m.Signal(syscall.SIGKILL)
		m.Wait(assaytest.StopTimeout)
	}
	wantOpened(t, assaytest.Probe(t, &cg, "open", secret, "r"), "network-only policy")

	relWrite(t, live, withFiles)
	if sighup {
		m.Signal(syscall.SIGHUP)
		m.WaitStderr("assay: reload", 1, eventTimeout)
		if !hasLineWith(m.Stderr(), "assay: reloaded "+live) {
			t.Fatalf("SIGHUP reload failed:\n%s", strings.Join(m.Stderr(), "\n"))
		}
		m.Signal(syscall.SIGKILL)
		m.Wait(assaytest.StopTimeout)
	} else if res := assaytest.Run(t, "reload", name, "--policy", live); res.ExitCode != 0 {
		t.Fatalf("assay reload: status %d, stdout %q, stderr:\n%s", res.ExitCode, res.Stdout, res.StderrText())
	}
	wantBlocked(t, assaytest.Probe(t, &cg, "open", secret, "r"), "after a reload added a file rule and the reloading process exited")
	if r := assaytest.Probe(t, &cg, "connect", "tcp4", "127.0.0.1:9"); r.Errno != "EPERM" {
		t.Errorf("connect to port 9: %q, want EPERM", r.Errno)
	}
	if st := relStatus(t, name); st == nil || st["rules"] != float64(2) {
		t.Errorf("status after the reload: %v", st)
	}
	det := assaytest.Run(t, "detach", name)
	// 4 socket programs and the file programs: 16 hooks on every kernel,
	// 18 where the ACL hooks exist (6.2 and later).
	var links int
	if det.ExitCode != 0 || len(det.Stdout) != 1 || !scanDetached(det.Stdout[0], name, &links) || links != 20 && links != 22 {
		t.Errorf("detach: status %d, stdout %q, stderr:\n%s", det.ExitCode, det.Stdout, det.StderrText())
	}
	wantOpened(t, assaytest.Probe(t, &cg, "open", secret, "r"), "after detach")
}

// scanDetached reads the number of links from detach's line for name.
func scanDetached(line, name string, links *int) bool {
	n, err := fmt.Sscanf(line, "assay: detached "+strconv.Quote(name)+" (%d links removed)", links)
	return err == nil && n == 1
}

func hasLineWith(lines []string, substr string) bool {
	for _, l := range lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}
