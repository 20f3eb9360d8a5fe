// Package e2e_test runs the real assay binary against fresh child cgroups
// on this host: cgroup sock_addr enforcement, event output, accounting,
// detach, and the command line's failure modes. It needs root (CI=true
// turns a skip into a failure). The BPF-LSM (file rule) enforcement tests
// live in test/lsm and run in a QEMU guest.
//
//	CI=true go test ./test/e2e/ -count=1 -v
//
// ASSAY_BIN selects a prebuilt binary; by default ./cmd/assay is built once.
package e2e_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
)

func TestMain(m *testing.M) { assaytest.Main(m) }

// eventTimeout bounds the wait for an event line after the probe that
// caused it has exited.
const eventTimeout = 10 * time.Second

// acceptTimeout bounds the wait for a listener to see an allowed
// connection or datagram (already made when the probe exits).
const acceptTimeout = 5 * time.Second

// writePolicy writes a policy file (fmt.Sprintf(format, args...)) into the
// test's temporary directory and returns its path.
func writePolicy(t *testing.T, format string, args ...any) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(format, args...)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// monitor starts `assay monitor --policy POLICY --cgroup CG EXTRA...`.
func monitor(t *testing.T, policy string, cg cgroup.Scope, extra ...string) *assaytest.Monitor {
	t.Helper()
	args := append([]string{"monitor", "--policy", policy, "--cgroup", cg.Path}, extra...)
	return assaytest.StartMonitor(t, args...)
}

// ports hands out listeners whose ports all differ, so that a port rule
// meant for one can never match another.
type ports map[uint16]bool

func (p ports) tcp(t *testing.T, addr string) *assaytest.TCPListener {
	t.Helper()
	for range 20 {
		l := assaytest.ListenTCP(t, addr)
		if !p[l.Port()] {
			p[l.Port()] = true
			return l
		}
	}
	t.Fatalf("no distinct free TCP port on %s", addr)
	return nil
}

func (p ports) udp(t *testing.T, addr string) *assaytest.UDPListener {
	t.Helper()
	for range 20 {
		l := assaytest.ListenUDP(t, addr)
		if !p[l.Port()] {
			p[l.Port()] = true
			return l
		}
	}
	t.Fatalf("no distinct free UDP port on %s", addr)
	return nil
}

// hostPort formats addr:port the way probes and the text output write it.
func hostPort(addr string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
}

func requireEPERM(t *testing.T, what string, r assaytest.ProbeResult) {
	t.Helper()
	if r.Errno != "EPERM" {
		t.Fatalf("%s: want EPERM, got errno %q (err %q)", what, r.Errno, r.Err)
	}
}

func requireOK(t *testing.T, what string, r assaytest.ProbeResult) {
	t.Helper()
	if !r.Ok() {
		t.Fatalf("%s: want success, got errno %q (err %q)", what, r.Errno, r.Err)
	}
}

// requireAccepted checks that l accepted the connection the probe made.
func requireAccepted(t *testing.T, l *assaytest.TCPListener, r assaytest.ProbeResult) {
	t.Helper()
	from := l.WaitAccept(t, acceptTimeout)
	local := r.LocalAddr()
	if want := netip.AddrPortFrom(local.Addr().Unmap(), local.Port()); from != want {
		t.Fatalf("listener %s accepted a connection from %s, want the probe's %s", l.Addr, from, want)
	}
}

// requireReceived checks that l got the probe's datagram. (An unconnected
// UDP socket's local address stays the wildcard, so only the port is
// compared.)
func requireReceived(t *testing.T, l *assaytest.UDPListener, r assaytest.ProbeResult) {
	t.Helper()
	p := l.WaitPacket(t, acceptTimeout)
	if p.From.Port() != r.LocalAddr().Port() || !p.From.Addr().IsLoopback() || p.Data != fmt.Sprintf("assaytest probe %d", r.PID) {
		t.Fatalf("UDP %s got %q from %s, want the probe's datagram from port %d", l.Addr, p.Data, p.From, r.LocalAddr().Port())
	}
}

// netEvent is the JSON event a network block or audit by probe r must give.
type netEvent struct {
	kind, verdict string // connect|sendmsg, blocked|audit
	rule          uint32
	family, proto string // inet|inet6, tcp|udp
	dst           string
	port          uint16
	mapped        bool
}

func (w netEvent) json(cg cgroup.Scope, r assaytest.ProbeResult) events.JSONEvent {
	return events.JSONEvent{
		Schema: events.SchemaVersion, Type: "event", Kind: w.kind, Verdict: w.verdict, RuleID: w.rule,
		PID: uint32(r.PID), TID: uint32(r.TID), Comm: r.Comm, CgroupID: cg.ID,
		Family: w.family, Protocol: w.proto, DstAddr: w.dst, DstPort: w.port, MappedIPv4: w.mapped,
	}
}

// checkEvent compares an event with what it must be, field by field, and
// checks that its time is a valid, recent RFC 3339 time.
func checkEvent(t *testing.T, got, want events.JSONEvent) {
	t.Helper()
	ts, err := time.Parse(events.JSONTime, got.Time)
	if err != nil {
		t.Errorf("event time %q: %v", got.Time, err)
	} else if d := time.Since(ts); d < -time.Minute || d > 5*time.Minute {
		t.Errorf("event time %s is %v away from now", got.Time, d)
	}
	got.Time = ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
}

// checkAccounting checks the exit summary against the events printed: the
// monitor exited 0, every emitted event was printed and none was lost.
func checkAccounting(t *testing.T, res assaytest.Result, events int) {
	t.Helper()
	if res.ExitCode != 0 {
		t.Errorf("assay exited %d; stderr:\n%s", res.ExitCode, res.StderrText())
	}
	if !res.HasSummary {
		t.Fatalf("no exit summary; stdout:\n%s\nstderr:\n%s", strings.Join(res.Stdout, "\n"), res.StderrText())
	}
	s := res.Summary
	if len(res.EventLines) != events {
		t.Errorf("%d event lines printed, want %d:\n%s", len(res.EventLines), events, strings.Join(res.EventLines, "\n"))
	}
	if s.Socket.Emitted != uint64(len(res.EventLines)) || s.Socket.Dropped != 0 {
		t.Errorf("summary socket emitted=%d dropped=%d, want emitted=%d (the event lines) dropped=0", s.Socket.Emitted, s.Socket.Dropped, len(res.EventLines))
	}
	if s.LSM.Emitted+s.LSM.Dropped+s.Tracepoint.Emitted+s.Tracepoint.Dropped != 0 {
		t.Errorf("summary has LSM or tracepoint events: %+v", s)
	}
	if s.Malformed != 0 || res.Pressure {
		t.Errorf("summary: malformed=%d pressure=%v", s.Malformed, res.Pressure)
	}
}
