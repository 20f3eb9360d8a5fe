package e2e_test

import (
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
)

// TestScopeLimit: eight --cgroup scopes are judged, all of them (a probe
// in the eighth is blocked); a ninth is refused before anything is
// attached to any of the nine.
func TestScopeLimit(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 40}]\n", l.Port())
	var cgs []cgroup.Scope
	var args []string
	for i := 0; i < 9; i++ {
		cg := assaytest.NewCgroup(t)
		cgs = append(cgs, cg)
		args = append(args, "--cgroup", cg.Path)
	}

	res := assaytest.Run(t, append([]string{"monitor", "--policy", pol}, args...)...)
	if res.ExitCode == 0 || !strings.Contains(res.StderrText(), "at most 8") {
		t.Errorf("nine scopes: exit %d, stderr:\n%s\nwant a failure saying at most 8", res.ExitCode, res.StderrText())
	}
	for _, cg := range cgs {
		assaytest.RequireDetached(t, cg)
	}

	m := assaytest.StartMonitor(t, append([]string{"monitor", "--policy", pol, "--output", "json"}, args[:16]...)...)
	for _, cg := range cgs[:8] {
		assaytest.RequireProgramCount(t, cg, 1)
	}
	requireEPERM(t, "in the eighth scope", assaytest.Probe(t, &cgs[7], "connect", "tcp4", l.String()))
	m.WaitEvents(1, eventTimeout)
	res = m.Stop()
	checkAccounting(t, res, 1)
	for _, cg := range cgs {
		assaytest.RequireDetached(t, cg)
	}
}

// TestPIDInRootCgroup: --pid of a process in the cgroup2 root is refused
// (it would scope the whole host) and nothing is attached at the root.
func TestPIDInRootCgroup(t *testing.T) {
	assaytest.Privileged(t)
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	if err := root.AddPID(sleep.Process.Pid); err != nil {
		t.Fatal(err)
	}
	before := assaytest.CgroupPrograms(t, root)
	res := assaytest.Run(t, "monitor", "--policy", writePolicy(t, netPolicy), "--pid", strconv.Itoa(sleep.Process.Pid))
	if res.ExitCode == 0 || !strings.Contains(res.StderrText(), "root cgroup") {
		t.Errorf("exit %d, stderr:\n%s\nwant a refusal naming the root cgroup", res.ExitCode, res.StderrText())
	}
	if after := assaytest.CgroupPrograms(t, root); !reflect.DeepEqual(before, after) {
		t.Errorf("programs at the cgroup2 root changed: %v -> %v", before, after)
	}
}

// TestDurationAndRateLimit: --duration stops the monitor by itself (exit 0,
// summary, detached); with --rate-limit 1 a burst of 100 blocked connects
// is reported once per second it spans and the rest are counted as
// suppressed, while --rate-limit 0 (unlimited) reports all 100. Every
// connect is blocked either way.
func TestDurationAndRateLimit(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	const n = 100
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 40}]\n", l.Port())
	for _, rate := range []string{"1", "0"} {
		cg := assaytest.NewCgroup(t)
		start := time.Now()
		m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", cg.Path, "--output", "json",
			"--rate-limit", rate, "--duration", "4s")
		burst := time.Now()
		r := assaytest.Probe(t, &cg, "connect-loop", strconv.Itoa(n), "tcp4", l.String())
		// The budget is per second of CLOCK_MONOTONIC: a burst that took
		// d seconds touches at most ceil(d)+1 of them.
		seconds := uint64(time.Since(burst)/time.Second) + 2
		if r.N != n || r.Other != 0 {
			t.Errorf("rate %s: %d of %d connects refused with EPERM, %d otherwise", rate, r.N, n, r.Other)
		}
		res := m.Wait(assaytest.StopTimeout)
		if res.ExitCode != 0 || !res.HasSummary {
			t.Errorf("rate %s: --duration 4s: exit %d, summary %v; stderr:\n%s", rate, res.ExitCode, res.HasSummary, res.StderrText())
		}
		if took := time.Since(start); took < 4*time.Second {
			t.Errorf("rate %s: the monitor stopped after %v, before --duration 4s", rate, took)
		}
		s := res.Summary.Socket
		if s.Emitted+s.Suppressed != n || len(res.Events) != int(s.Emitted) {
			t.Errorf("rate %s: emitted=%d suppressed=%d events=%d; want emitted+suppressed=%d, one event per emitted", rate, s.Emitted, s.Suppressed, len(res.Events), n)
		}
		switch rate {
		case "1":
			if s.Emitted < 1 || s.Emitted > seconds {
				t.Errorf("rate 1: %d events emitted for a burst within %d seconds", s.Emitted, seconds)
			}
		case "0":
			if s.Suppressed != 0 {
				t.Errorf("rate 0 (unlimited): %d events suppressed", s.Suppressed)
			}
		}
		assaytest.RequireDetached(t, cg)
	}
	if got := l.Accepted(); len(got) != 0 {
		t.Errorf("listener accepted blocked connections from %v", got)
	}
}

// TestScopeRemovedStopsAll: an unpinned monitor of two cgroups stops when
// one of them is removed (exit 3, the message, a summary) and leaves
// nothing attached: not to the removed cgroup, not to the other one, where
// a connect then passes.
func TestScopeRemovedStopsAll(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 40}]\n", l.Port())
	gone, kept := assaytest.NewCgroup(t), assaytest.NewCgroup(t)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", gone.Path, "--cgroup", kept.Path, "--output", "json")
	assaytest.RequireProgramCount(t, kept, 1)
	requireEPERM(t, "before the removal", assaytest.Probe(t, &kept, "connect", "tcp4", l.String()))

	if err := cgroup.Remove(gone); err != nil {
		t.Fatal(err)
	}
	res := m.Wait(assaytest.StopTimeout)
	if res.ExitCode != 3 || !strings.Contains(res.StderrText(), "was removed while monitored") || !res.HasSummary {
		t.Errorf("exit %d, summary %v, stderr:\n%s\nwant exit 3 saying the cgroup was removed", res.ExitCode, res.HasSummary, res.StderrText())
	}
	assaytest.RequireDetached(t, kept)
	r := assaytest.Probe(t, &kept, "connect", "tcp4", l.String())
	requireOK(t, "after the monitor stopped", r)
	requireAccepted(t, l, r)
}

// TestAllJudgesWholeHost: `--all` attaches at the cgroup2 root and judges
// every process on the host: a connect to the denied port (a listener of
// this test, which nothing else on the machine uses) is refused from a
// fresh cgroup no flag names and from the test's own cgroup, each event
// naming its cgroup; when the monitor stops, the root has the programs it
// had before and the connect passes.
func TestAllJudgesWholeHost(t *testing.T) {
	assaytest.Privileged(t)
	l := assaytest.ListenTCP(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 44}]\n", l.Port())
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	self, err := cgroup.ForPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cg := assaytest.NewCgroup(t)
	before := assaytest.CgroupPrograms(t, root)

	m := assaytest.StartMonitor(t, "monitor", "--all", "--policy", pol, "--output", "json")
	during := assaytest.CgroupPrograms(t, root)
	for _, typ := range assaytest.SocketAttachTypes {
		if len(during[typ]) != len(before[typ])+1 {
			t.Errorf("%v at the cgroup2 root: %v while monitoring, %v before; want one more", typ, during[typ], before[typ])
		}
	}
	inFresh := assaytest.Probe(t, &cg, "connect", "tcp4", l.String())
	inSelf := assaytest.Probe(t, nil, "connect", "tcp4", l.String())
	requireEPERM(t, "from a cgroup no flag names", inFresh)
	requireEPERM(t, "from the test's own cgroup", inSelf)
	m.WaitEvents(2, eventTimeout)
	res := m.Stop()
	checkAccounting(t, res, 2)
	byPID := map[int]uint64{}
	for _, e := range res.Events {
		byPID[int(e.PID)] = e.CgroupID
	}
	if byPID[inFresh.PID] != cg.ID || byPID[inSelf.PID] != self.ID {
		t.Errorf("events' cgroups by pid %v; want %d: %d (fresh) and %d: %d (the test's)", byPID, inFresh.PID, cg.ID, inSelf.PID, self.ID)
	}
	if after := assaytest.CgroupPrograms(t, root); !reflect.DeepEqual(before, after) {
		t.Errorf("programs at the cgroup2 root: %v before, %v after the monitor stopped", before, after)
	}
	requireOK(t, "after the monitor stopped", assaytest.Probe(t, &cg, "connect", "tcp4", l.String()))
}
