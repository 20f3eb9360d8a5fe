package reliability_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
)

// statusInstance is one instance of `assay status --output json`.
type statusInstance struct {
	Name   string `json:"name"`
	Scopes []struct {
		Path  string `json:"path"`
		ID    uint64 `json:"id"`
		Level int    `json:"level"`
	} `json:"scopes"`
	Policy     string                       `json:"policy"`
	Digest     string                       `json:"digest"`
	Rules      int                          `json:"rules"`
	Mode       string                       `json:"mode"`
	AttachedAt time.Time                    `json:"attached_at"`
	ReloadedAt time.Time                    `json:"reloaded_at"`
	PID        int                          `json:"pid"`
	Alive      bool                         `json:"monitor_alive"`
	Counters   map[string]events.PathCounts `json:"counters"`
	Error      string                       `json:"error"`
}

// statusJSON runs `assay status --output json` and returns the instance
// named name (nil when it is not listed).
func statusJSON(t *testing.T, name string) *statusInstance {
	t.Helper()
	res := assaytest.Run(t, "status", "--output", "json")
	if res.ExitCode != 0 || len(res.Stdout) != 1 {
		t.Fatalf("assay status --output json: status %d, stdout %q, stderr:\n%s", res.ExitCode, res.Stdout, res.StderrText())
	}
	var st struct {
		Type      string           `json:"type"`
		Instances []statusInstance `json:"instances"`
	}
	if err := json.Unmarshal([]byte(res.Stdout[0]), &st); err != nil || st.Type != "status" {
		t.Fatalf("assay status --output json: %v: %s", err, res.Stdout[0])
	}
	for i := range st.Instances {
		if st.Instances[i].Name == name {
			return &st.Instances[i]
		}
	}
	return nil
}

// statusRow runs `assay status` and returns the columns of the row of
// instance name (nil when it is not listed).
func statusRow(t *testing.T, name string) []string {
	t.Helper()
	res := assaytest.Run(t, "status")
	if res.ExitCode != 0 {
		t.Fatalf("assay status: status %d, stderr:\n%s", res.ExitCode, res.StderrText())
	}
	for _, l := range res.Stdout {
		cols := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
		if cols[0] == name {
			return cols
		}
	}
	return nil
}

// policyDigest returns the policy file's digest, the hex SHA-256 of its
// bytes, computed here (not by the code under test); it also checks that
// `assay policy check` reports the same digest.
func policyDigest(t *testing.T, pol string) string {
	t.Helper()
	data, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	res := assaytest.Run(t, "policy", "check", pol)
	if res.ExitCode != 0 || len(res.Stdout) == 0 {
		t.Fatalf("policy check %s: %s", pol, res.StderrText())
	}
	m := regexp.MustCompile(`digest sha256:([0-9a-f]{64})\)$`).FindStringSubmatch(res.Stdout[0])
	if m == nil {
		t.Fatalf("no digest in %q", res.Stdout[0])
	}
	if m[1] != want {
		t.Fatalf("policy check %s reports digest %s; the file's SHA-256 is %s", pol, m[1], want)
	}
	return want
}

// eventsOf returns the events of process pid.
func eventsOf(evs []events.JSONEvent, pid int) []events.JSONEvent {
	var out []events.JSONEvent
	for _, e := range evs {
		if int(e.PID) == pid {
			out = append(out, e)
		}
	}
	return out
}

// TestPinOutlivesMonitor: `assay monitor --pin NAME` keeps enforcing after
// the monitor is SIGKILLed: the denied connect stays denied, the programs
// stay attached, `assay status` (text and JSON) lists the instance with
// its scope, policy digest, rule count, attach time and counters;
// `assay monitor --attach NAME` delivers the event of a denial made while
// no monitor ran (the ring buffer kept it) and streams new ones, its
// summary counting since the pin; `assay detach NAME` removes everything
// (a monitor attached then stops, saying so), and the connect passes
// again.
func TestPinOutlivesMonitor(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	l, addr := listen(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 41}, 23]\n", l.Port())
	digest := policyDigest(t, pol)
	name := pinName(t)
	start := time.Now()
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--pin", name, "--output", "json")
	m.WaitStderr(fmt.Sprintf("assay: pinned as %q", name), 1, 5*time.Second)

	r1 := assaytest.Probe(t, &cg, "connect", "tcp4", addr)
	requireEPERM(t, "with the monitor running", r1)
	m.WaitEvents(1, eventTimeout)

	// Status, text: NAME SCOPE POLICY DIGEST RULES MODE ATTACHED EVENTS.
	row := statusRow(t, name)
	if len(row) != 8 {
		t.Fatalf("assay status: row of %s: %q", name, row)
	}
	attached, err := time.ParseInLocation(time.DateTime, row[6], time.Local)
	if want := []string{name, cg.Path, pol, digest[:12], "2", "enforce"}; strings.Join(row[:6], "|") != strings.Join(want, "|") ||
		err != nil || attached.Before(start.Truncate(time.Second)) || attached.After(time.Now()) || row[7] != "1/0/0" {
		t.Errorf("assay status row %q; want %q, an attach time between %s and now, events 1/0/0", row, want, start.Format(time.DateTime))
	}
	// Status, JSON.
	st := statusJSON(t, name)
	if st == nil {
		t.Fatalf("assay status --output json does not list %s", name)
	}
	if st.Digest != digest || st.Rules != 2 || st.Mode != "enforce" || st.Policy != pol || len(st.Scopes) != 1 ||
		st.Scopes[0].Path != cg.Path || st.Scopes[0].ID != cg.ID || st.Scopes[0].Level != cg.Level ||
		!st.Alive || st.PID != m.Pid() || st.Counters["socket"].Emitted != 1 || st.Error != "" ||
		st.AttachedAt.Before(start.Add(-time.Second)) || st.AttachedAt.After(time.Now()) {
		t.Errorf("assay status --output json: %+v\nwant digest %s, 2 rules, enforce, policy %s, scope %s (id %d, level %d), monitor %d alive, 1 socket event",
			*st, digest, pol, cg.Path, cg.ID, cg.Level, m.Pid())
	}

	// SIGKILL: no cleanup at all. The pins hold the links.
	m.Signal(syscall.SIGKILL)
	if res := m.Wait(10 * time.Second); res.ExitCode != -1 {
		t.Fatalf("monitor exit status %d after SIGKILL, want -1 (killed)", res.ExitCode)
	}
	if !pinned(name) {
		t.Fatalf("%s/%s is gone after the monitor was killed", kernel.PinRoot, name)
	}
	assaytest.RequireProgramCount(t, cg, 1)
	r2 := assaytest.Probe(t, &cg, "connect", "tcp4", addr)
	requireEPERM(t, "after SIGKILL of the monitor", r2)
	if st := statusJSON(t, name); st == nil || st.Alive || st.Counters["socket"].Emitted != 2 {
		t.Errorf("status after SIGKILL: %+v; want the instance, monitor not alive, 2 socket events", st)
	}

	// --attach: the event of r2 waited in the ring buffer.
	a := assaytest.StartMonitor(t, "monitor", "--attach", name, "--output", "json")
	a.WaitEvents(1, eventTimeout)
	r3 := assaytest.Probe(t, &cg, "connect", "tcp4", addr)
	requireEPERM(t, "while attached", r3)
	a.WaitEvents(2, eventTimeout)
	ares := a.Stop()
	if ares.ExitCode != 0 || !ares.HasSummary {
		t.Errorf("--attach: exit status %d, summary %v; stderr:\n%s", ares.ExitCode, ares.HasSummary, ares.StderrText())
	}
	if len(ares.Events) != 2 || len(eventsOf(ares.Events, r2.PID)) != 1 || len(eventsOf(ares.Events, r3.PID)) != 1 ||
		len(eventsOf(ares.Events, r1.PID)) != 0 {
		t.Errorf("--attach events (want r2's, made with no monitor running, then r3's; r1's was delivered before): %q", ares.EventLines)
	}
	for _, e := range ares.Events {
		if e.RuleID != 41 || e.CgroupID != cg.ID || e.DstPort != l.Port() || e.Verdict != "blocked" {
			t.Errorf("--attach event %+v: want blocked, rule 41, cgroup %d, port %d", e, cg.ID, l.Port())
		}
	}
	if s := ares.Summary.Socket; s.Emitted != 3 || s.Dropped != 0 {
		t.Errorf("--attach summary socket %+v, want emitted=3 (every event since the pin)", s)
	}
	if !hasLine(ares.Stderr, "the instance stays in force") {
		t.Errorf("--attach stderr does not say the instance stays in force:\n%s", ares.StderrText())
	}
	// Stopping the attached monitor left the instance in force.
	requireEPERM(t, "after --attach stopped", assaytest.Probe(t, &cg, "connect", "tcp4", addr))

	// detach: everything goes; a monitor attached to the instance is
	// told (inotify on the pins, no polling) and stops.
	a2 := assaytest.StartMonitor(t, "monitor", "--attach", name, "--output", "json")
	det := assaytest.Run(t, "detach", name)
	if det.ExitCode != 0 || len(det.Stdout) != 1 || det.Stdout[0] != fmt.Sprintf("assay: detached %q (4 links removed)", name) {
		t.Errorf("detach: status %d, stdout %q, stderr:\n%s", det.ExitCode, det.Stdout, det.StderrText())
	}
	a2res := a2.Wait(assaytest.StopTimeout)
	if a2res.ExitCode != 0 || !hasLine(a2res.Stderr, fmt.Sprintf("assay: instance %q was detached", name)) || !a2res.HasSummary {
		t.Errorf("--attach during detach: exit status %d, summary %v; stderr (want it to say the instance was detached):\n%s",
			a2res.ExitCode, a2res.HasSummary, a2res.StderrText())
	}
	assaytest.RequireDetached(t, cg)
	if pinned(name) {
		t.Errorf("%s/%s still exists after detach", kernel.PinRoot, name)
	}
	ok := assaytest.Probe(t, &cg, "connect", "tcp4", addr)
	requireOK(t, "after detach", ok)
	requireAccepted(t, l, ok)
	if statusRow(t, name) != nil || statusJSON(t, name) != nil {
		t.Errorf("assay status still lists %s after detach", name)
	}
	again := assaytest.Run(t, "detach", name)
	if again.ExitCode != 1 || !hasLine(again.Stderr, "no pinned instance named") {
		t.Errorf("second detach: status %d, stderr:\n%s", again.ExitCode, again.StderrText())
	}
}

// TestUnpinnedDiesWithMonitor: without --pin nothing outlives the process:
// right after a SIGKILL of the monitor the denied connect passes, nothing
// is attached to the cgroup and nothing was pinned.
func TestUnpinnedDiesWithMonitor(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	l, addr := listen(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 42}]\n", l.Port())
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path)
	requireEPERM(t, "with the monitor running", assaytest.Probe(t, &cg, "connect", "tcp4", addr))
	assaytest.RequireProgramCount(t, cg, 1)

	m.Signal(syscall.SIGKILL)
	m.Wait(10 * time.Second)
	r := assaytest.Probe(t, &cg, "connect", "tcp4", addr)
	requireOK(t, "right after SIGKILL of an unpinned monitor", r)
	requireAccepted(t, l, r)
	assaytest.RequireDetached(t, cg)
	// Nothing was pinned for this cgroup (other tests pin concurrently:
	// look for this scope, not at the number of instances).
	res := assaytest.Run(t, "status", "--output", "json")
	if res.ExitCode != 0 || strings.Contains(strings.Join(res.Stdout, ""), fmt.Sprintf("%q", cg.Path)) {
		t.Errorf("assay status lists an instance on %s after an unpinned monitor died:\n%s", cg.Path, strings.Join(res.Stdout, "\n"))
	}
}

// TestPinnedEventsWaitThenCountAsDropped: with the monitor of a pinned
// instance killed, refused connects go on being judged; their events wait
// in the ring buffer until it is full, and the rest count as dropped (the
// README's "events wait in the ring buffer (then count as dropped) until
// --attach"): with a 4 KiB ring and 300 refused connects, `assay status`
// counts emitted + dropped = 300 with some dropped, and `--attach`
// delivers exactly the emitted ones that waited, its summary counting
// every one of the 300.
func TestPinnedEventsWaitThenCountAsDropped(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	const n = 300
	cg := assaytest.NewCgroup(t)
	l, addr := listen(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 42}]\n", l.Port())
	name := pinName(t)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--pin", name,
		"--ring-size", "4096", "--rate-limit", "0", "--output", "json")
	m.Signal(syscall.SIGKILL)
	m.Wait(10 * time.Second)

	r := assaytest.Probe(t, &cg, "connect-loop", strconv.Itoa(n), "tcp4", addr)
	if r.N != n || r.Other != 0 {
		t.Fatalf("%d of %d connects refused with EPERM, %d otherwise", r.N, n, r.Other)
	}
	st := statusJSON(t, name)
	if st == nil {
		t.Fatalf("assay status does not list %s", name)
	}
	c := st.Counters["socket"]
	t.Logf("status with no monitor: socket %+v", c)
	if c.Emitted+c.Dropped != n || c.Dropped == 0 || c.Emitted == 0 {
		t.Fatalf("status counters %+v with no monitor: want emitted + dropped = %d, both non-zero (a 4 KiB ring)", c, n)
	}

	a := assaytest.StartMonitor(t, "monitor", "--attach", name, "--output", "json")
	a.WaitEvents(int(c.Emitted), eventTimeout)
	ares := a.Stop()
	if len(ares.Events) != int(c.Emitted) || len(eventsOf(ares.Events, r.PID)) != int(c.Emitted) {
		t.Errorf("--attach delivered %d events (%d of the probe), want the %d that waited in the ring buffer", len(ares.Events), len(eventsOf(ares.Events, r.PID)), c.Emitted)
	}
	if s := ares.Summary.Socket; s.Emitted != c.Emitted || s.Dropped != c.Dropped || s.Emitted+s.Dropped != n {
		t.Errorf("--attach summary socket %+v, want emitted=%d dropped=%d (every refusal since the pin)", s, c.Emitted, c.Dropped)
	}
	if det := assaytest.Run(t, "detach", name); det.ExitCode != 0 {
		t.Errorf("detach: %s", det.StderrText())
	}
}
