package reliability_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/kernel"
)

// reloads is how many policy swaps each reload test makes under load.
const reloads = 50

// Rule ids of the two policies the reload tests alternate. Both deny port
// P, under different ids; A also denies X, B also denies Y.
const (
	idPinA, idXinA = 101, 102
	idPinB, idYinB = 201, 202
)

// checked is a probe made right after a reload, and the rule it must meet.
type checked struct {
	pid  int
	rule uint32
	what string
}

// TestReloadUnderLoad swaps the policy 50 times, alternating A and B,
// while a probe hammers connect(2) to a port both deny (under different
// rule ids), in a loop, without pause. Every attempt must be refused:
// there is no instant at which no policy judges. After each swap a second
// process, in a second scope cgroup (its events are not crowded out by the
// hammer's under the per-cgroup rate limit), connects to the same port and
// gets the new policy's rule id: the swap really happened. Every tenth
// swap, the ports only one policy denies are checked too. A refused reload
// (invalid YAML; file rules this kernel cannot enforce) in the middle
// leaves the policy in force. Two ways to reload:
//
//   - sighup: rewrite the --policy file, SIGHUP the monitor;
//   - pinned: `assay reload NAME --policy FILE` on an instance whose
//     monitor was SIGKILLed, streamed with `assay monitor --attach`.
//
// The accounting stays exact throughout: emitted + dropped + suppressed is
// the number of refused connects, emitted the number of events printed.
func TestReloadUnderLoad(t *testing.T) {
	assaytest.Privileged(t)
	for _, pinnedVariant := range []bool{false, true} {
		name := "sighup"
		if pinnedVariant {
			name = "pinned"
		}
		t.Run(name, func(t *testing.T) { reloadUnderLoad(t, pinnedVariant) })
	}
}

func reloadUnderLoad(t *testing.T, pin bool) {
	hammerCG := assaytest.NewCgroup(t)
	checkCG := assaytest.NewCgroup(t)
	ls := distinctListeners(t, 3)
	lP, lX, lY := ls[0], ls[1], ls[2]
	dir := t.TempDir()
	polA := fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: %d, id: %d}, {port: %d, id: %d}]\n", lP.Port(), idPinA, lX.Port(), idXinA)
	polB := fmt.Sprintf("version: 1\nnetwork:\n  deny_ports: [{port: %d, id: %d}, {port: %d, id: %d}]\n", lP.Port(), idPinB, lY.Port(), idYinB)
	fileA, fileB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeAtomic(t, fileA, polA)
	writeAtomic(t, fileB, polB)
	live := filepath.Join(dir, "policy.yaml") // the file the sighup monitor re-reads
	writeAtomic(t, live, polA)
	badYAML := "version: 1\nnetwork: [\n"
	secret := filepath.Join(dir, "secret")
	writeAtomic(t, secret, "s3cret")
	fileRules := polA + fmt.Sprintf("files:\n  deny: [{path: %s, id: 7}]\n", secret)

	// The monitor, and where the events are read.
	args := []string{"monitor", "--policy", live, "--cgroup", hammerCG.Path, "--cgroup", checkCG.Path, "--output", "json", "--rate-limit", "1000"}
	instance := ""
	if pin {
		instance = pinName(t)
		args = append(args, "--pin", instance)
	}
	m := assaytest.StartMonitor(t, args...)
	if pin {
		m.Signal(syscall.SIGKILL)
		m.Wait(10 * time.Second)
		m = assaytest.StartMonitor(t, "monitor", "--attach", instance, "--output", "json")
	}

	stop := filepath.Join(dir, "stop")
	hammer := assaytest.StartProbe(t, &hammerCG, "connect-until", stop, "tcp4", lP.String())
	waitFile(t, stop+".ready", 10*time.Second)

	var checks []checked
	check := func(cur string) {
		t.Helper()
		wantP := uint32(idPinA)
		if cur == "B" {
			wantP = idPinB
		}
		r := assaytest.Probe(t, &checkCG, "connect", "tcp4", lP.String())
		requireEPERM(t, "checker after the swap to "+cur, r)
		checks = append(checks, checked{r.PID, wantP, "port P under " + cur})
	}
	checkXY := func(cur string) {
		t.Helper()
		denied, allowed, rule := lX, lY, uint32(idXinA)
		if cur == "B" {
			denied, allowed, rule = lY, lX, idYinB
		}
		r := assaytest.Probe(t, &checkCG, "connect", "tcp4", denied.String())
		requireEPERM(t, "the port only "+cur+" denies", r)
		checks = append(checks, checked{r.PID, rule, "the port only " + cur + " denies"})
		ok := assaytest.Probe(t, &checkCG, "connect", "tcp4", allowed.String())
		requireOK(t, "the port only the other policy denies, under "+cur, ok)
		requireAccepted(t, allowed, ok)
	}
	reloaded := 0
	reload := func(text, file string) {
		t.Helper()
		if !pin {
			writeAtomic(t, live, text)
			m.Signal(syscall.SIGHUP)
			reloaded++
			m.WaitStderr("assay: reloaded "+live, reloaded, 10*time.Second)
			return
		}
		res := assaytest.Run(t, "reload", instance, "--policy", file)
		if res.ExitCode != 0 || len(res.Stdout) != 1 || !strings.HasPrefix(res.Stdout[0], fmt.Sprintf("assay: reloaded %q with %s", instance, file)) {
			t.Fatalf("assay reload: status %d, stdout %q, stderr:\n%s", res.ExitCode, res.Stdout, res.StderrText())
		}
	}
	refused := 0
	refuse := func(what, text string) {
		t.Helper()
		if !pin {
			writeAtomic(t, live, text)
			m.Signal(syscall.SIGHUP)
			refused++
			lines := m.WaitStderr("assay: reload refused, the previous policy stays in force: ", refused, 10*time.Second)
			t.Logf("%s: %s", what, lines[len(lines)-1])
			return
		}
		bad := filepath.Join(dir, "refused.yaml")
		writeAtomic(t, bad, text)
		res := assaytest.Run(t, "reload", instance, "--policy", bad)
		if res.ExitCode != 1 || len(res.Stderr) != 1 || !strings.HasPrefix(res.Stderr[0], "assay: reload refused, the previous policy stays in force: ") || len(res.Stdout) != 0 {
			t.Fatalf("%s: assay reload: status %d (want 1), stdout %q, stderr:\n%s", what, res.ExitCode, res.Stdout, res.StderrText())
		}
		t.Logf("%s: %s", what, res.Stderr[0])
	}

	check("A")
	checkXY("A")
	cur := "A"
	var digestBefore string
	begin := time.Now()
	for i := 1; i <= reloads; i++ {
		if i == reloads/2 {
			if pin {
				digestBefore = statusJSON(t, instance).Digest
			}
			refuse("invalid YAML", badYAML)
			check(cur)
			checkXY(cur)
			// Where BPF LSM works, a reload that brings file rules is
			// accepted and enforced: test/lsm TestPinnedReloadAddsFileRules
			// and TestReloadFileRulesUnderLoad.
			if kernel.ProbeLSM() != nil {
				refuse("file rules without BPF LSM", fileRules)
				check(cur)
			}
			if pin {
				if st := statusJSON(t, instance); st.Digest != digestBefore {
					t.Errorf("status digest changed by a refused reload: %s -> %s", digestBefore, st.Digest)
				}
			}
		}
		if cur == "A" {
			cur = "B"
			reload(polB, fileB)
		} else {
			cur = "A"
			reload(polA, fileA)
		}
		check(cur)
		if i%10 == 0 {
			checkXY(cur)
		}
	}
	elapsed := time.Since(begin)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := hammer.Wait()
	t.Logf("hammer: %d connects in %.1fs (%.0f/s) across %d reloads (%.1f ms per reload and check)",
		h.Attempts, elapsed.Seconds(), float64(h.Attempts)/elapsed.Seconds(), reloads, float64(elapsed.Milliseconds())/reloads)
	if h.Attempts == 0 || h.Other != 0 || h.N != h.Attempts {
		t.Errorf("hammer: %d attempts, %d EPERM, %d other (last: %q %q): want every attempt refused", h.Attempts, h.N, h.Other, h.Errno, h.Err)
	}

	if pin {
		st := statusJSON(t, instance)
		if want := policyDigest(t, fileA); st == nil || st.Digest != want || st.ReloadedAt.IsZero() || st.Rules != 2 {
			t.Errorf("status after the reloads: %+v; want digest %s (policy A), a reload time", st, want)
		}
	}
	// Let the last checker events reach the reader, then stop.
	m.WaitEvents(len(checks), eventTimeout)
	res := m.Stop()
	if res.ExitCode != 0 || !res.HasSummary {
		t.Fatalf("monitor: exit status %d, summary %v; stderr:\n%s", res.ExitCode, res.HasSummary, res.StderrText())
	}
	for _, c := range checks {
		evs := eventsOf(res.Events, c.pid)
		if len(evs) != 1 || evs[0].RuleID != c.rule || evs[0].CgroupID != checkCG.ID {
			t.Errorf("%s: events of pid %d: %+v; want one with rule %d in cgroup %d", c.what, c.pid, evs, c.rule, checkCG.ID)
		}
	}
	byRule := map[uint32]int{}
	for _, e := range res.Events {
		if int(e.PID) == hammer.Pid() {
			byRule[e.RuleID]++
		}
	}
	t.Logf("hammer events by rule id: %v (rate-limited to 1000/s per cgroup)", byRule)
	if len(checks) == 0 || byRule[idXinA]+byRule[idYinB] != 0 {
		t.Errorf("hammer events under a rule for another port: %v", byRule)
	}
	s := res.Summary.Socket
	denied := uint64(h.N + len(checks))
	t.Logf("summary socket: emitted=%d dropped=%d suppressed=%d; refused connects %d", s.Emitted, s.Dropped, s.Suppressed, denied)
	if s.Emitted+s.Dropped+s.Suppressed != denied || s.Emitted != uint64(len(res.EventLines)) {
		t.Errorf("accounting: emitted %d + dropped %d + suppressed %d != %d refused connects, or emitted != %d event lines",
			s.Emitted, s.Dropped, s.Suppressed, denied, len(res.EventLines))
	}
	if pin {
		if det := assaytest.Run(t, "detach", instance); det.ExitCode != 0 {
			t.Errorf("detach: %s", det.StderrText())
		}
	}
	for _, cg := range []cgroup.Scope{hammerCG, checkCG} {
		assaytest.RequireDetached(t, cg)
	}
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within %v", path, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
