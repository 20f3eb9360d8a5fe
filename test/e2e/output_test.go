package e2e_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
)

func hasPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// checkLines requires exactly the lines want, in order.
func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTextOutput: the text operator lines have exactly their documented
// shape, and the exit summary is the three counter lines on stderr.
func TestTextOutput(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	udp6 := assaytest.ListenUDP(t, "[::1]:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: 22, id: 40}, {port: %d, id: 41}]\n", udp6.Port())
	m := monitor(t, pol, cg)

	// Port 22 is refused whether or not anything listens there.
	rc := assaytest.Probe(t, &cg, "connect", "tcp4", "127.0.0.1:22")
	requireEPERM(t, "tcp4 :22", rc)
	rm := assaytest.Probe(t, &cg, "connect", "tcp6", "[::ffff:127.0.0.1]:22")
	requireEPERM(t, "mapped :22", rm)
	rs := assaytest.Probe(t, &cg, "sendto", "udp6", udp6.String())
	requireEPERM(t, "udp6 sendto", rs)
	m.WaitEvents(3, eventTimeout)
	res := m.Stop()

	want := []string{
		fmt.Sprintf("[PID %d] 🛡️ BLOCKED CONNECT: dst=127.0.0.1:22 proto=tcp cgroup=%d rule_id=40 family=inet comm=%s tid=%d",
			rc.PID, cg.ID, rc.Comm, rc.TID),
		fmt.Sprintf("[PID %d] 🛡️ BLOCKED CONNECT: dst=[::ffff:127.0.0.1]:22 proto=tcp cgroup=%d rule_id=40 family=inet6 mapped_ipv4=true comm=%s tid=%d",
			rm.PID, cg.ID, rm.Comm, rm.TID),
		fmt.Sprintf("[PID %d] 🛡️ BLOCKED SENDMSG: dst=[::1]:%d proto=udp cgroup=%d rule_id=41 family=inet6 comm=%s tid=%d",
			rs.PID, udp6.Port(), cg.ID, rs.Comm, rs.TID),
	}
	checkLines(t, "stdout", res.Stdout, want)
	if rc.TID != rc.PID {
		t.Errorf("probe tid %d != pid %d: the probe's syscalls should run on its main thread", rc.TID, rc.PID)
	}
	wantErr := []string{
		fmt.Sprintf("assay: enforcing %s (2 port, 0 allow CIDR, 0 deny CIDR, 0 file rules, mode enforce) on cgroup %s (id %d, level %d); stop with Ctrl-C",
			pol, cg.Path, cg.ID, cg.Level),
		"Tracepoint ringbuf: emitted=0 dropped=0",
		"LSM ringbuf: emitted=0 dropped=0",
		"Socket ringbuf: emitted=3 dropped=0",
	}
	checkLines(t, "stderr", res.Stderr, wantErr)
	checkAccounting(t, res, 3)
	assaytest.RequireDetached(t, cg)
}

// TestRingBufferPressure floods a 4 KiB ring buffer (room for ~50 network
// records) and checks the accounting: every EPERM the probe saw was either
// emitted or counted as dropped, every emitted record was printed, and the
// text summary warns about the pressure.
//
// The monitor's reader usually keeps up with a single flooding process, so
// drops would be a matter of scheduling luck. Instead the test stops the
// monitor with SIGSTOP (waiting until every one of its threads is stopped)
// for the duration of the flood and resumes it with SIGCONT afterwards: the
// BPF programs keep running in the flooding process's context, the ring
// buffer fills after ~50 records and every later record is dropped, all
// deterministically. The programs and their counters are unaffected by the
// reader being stopped, which is exactly the situation the counters exist
// for.
func TestRingBufferPressure(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	const attempts = 20000
	cg := assaytest.NewCgroup(t)
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: 9, id: 9}]\n")
	m := monitor(t, pol, cg, "--ring-size", "4096")

	m.Signal(syscall.SIGSTOP)
	waitStopped(t, m.Pid())
	r := assaytest.Probe(t, &cg, "connect-loop", fmt.Sprint(attempts), "tcp4", "127.0.0.1:9")
	m.Signal(syscall.SIGCONT)
	if r.Attempts != attempts || r.N != attempts {
		t.Fatalf("connect-loop: %d attempts, %d EPERM, %d other (last error %q); want every one of %d refused", r.Attempts, r.N, r.Other, r.Err, attempts)
	}
	res := m.Stop()

	if res.ExitCode != 0 || !res.HasSummary {
		t.Fatalf("assay exited %d, summary found: %v; stderr:\n%s", res.ExitCode, res.HasSummary, res.StderrText())
	}
	s := res.Summary.Socket
	t.Logf("%d refused connects: emitted=%d dropped=%d, %d event lines", r.N, s.Emitted, s.Dropped, len(res.EventLines))
	if s.Dropped == 0 {
		t.Errorf("no drops with a 4 KiB ring buffer and a stopped reader")
	}
	if s.Emitted+s.Dropped != uint64(r.N) {
		t.Errorf("emitted %d + dropped %d = %d, want the %d refused connects", s.Emitted, s.Dropped, s.Emitted+s.Dropped, r.N)
	}
	if uint64(len(res.EventLines)) != s.Emitted {
		t.Errorf("%d event lines printed, summary says %d emitted", len(res.EventLines), s.Emitted)
	}
	if !res.Pressure || !hasPrefix(res.Stderr, events.PressureWarning) {
		t.Errorf("no %q line in the summary:\n%s", events.PressureWarning, res.StderrText())
	}
	for _, l := range res.EventLines {
		if !strings.Contains(l, "BLOCKED CONNECT: dst=127.0.0.1:9 proto=tcp") || !strings.HasPrefix(l, fmt.Sprintf("[PID %d] ", r.PID)) {
			t.Errorf("unexpected event line %q", l)
			break
		}
	}
	assaytest.RequireDetached(t, cg)
}

// waitStopped waits until every thread of pid is in the stopped state.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		stopped := len(tasks) > 0
		for _, task := range tasks {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				stopped = false
				break
			}
			// The state follows the parenthesised comm, which may
			// itself contain ") ".
			s := string(stat)
			i := strings.LastIndex(s, ") ")
			if i < 0 || i+2 >= len(s) || s[i+2] != 'T' {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped after SIGSTOP", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
