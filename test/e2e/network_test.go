package e2e_test

import (
	"fmt"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/events"
)

// probeCase is one probe and, when it must be judged, the event it gives.
type probeCase struct {
	name   string
	action string
	args   []string
	event  *netEvent // nil: allowed, no event
	tcp    *assaytest.TCPListener
	udp    *assaytest.UDPListener
}

// runCases runs each case's probe inside the cgroup: a case with an event
// must get EPERM and give exactly that event (the monitor runs with
// --output json); a case without one must succeed and reach its listener.
// It returns the events expected, in order.
func runCases(t *testing.T, m *assaytest.Monitor, cg cgroup.Scope, cases []probeCase) []expectation {
	t.Helper()
	var want []expectation
	for _, c := range cases {
		r := assaytest.Probe(t, &cg, c.action, c.args...)
		if c.event != nil {
			requireEPERM(t, c.name, r)
		} else {
			requireOK(t, c.name, r)
			if c.tcp != nil {
				requireAccepted(t, c.tcp, r)
			}
			if c.udp != nil {
				requireReceived(t, c.udp, r)
			}
		}
		if c.event == nil {
			continue
		}
		e := expectation{name: c.name, want: c.event.json(cg, r)}
		want = append(want, e)
		lines := m.WaitEvents(len(want), eventTimeout)
		if len(lines) != len(want) {
			t.Fatalf("%s: %d event lines, want %d:\n%s", c.name, len(lines), len(want), lines)
		}
	}
	return want
}

// expectation is the event a case must give.
type expectation struct {
	name string
	want events.JSONEvent
}

func checkEvents(t *testing.T, got []events.JSONEvent, exp []expectation) {
	t.Helper()
	if len(got) != len(exp) {
		t.Errorf("%d events, want %d", len(got), len(exp))
		return
	}
	for i, e := range exp {
		checkEvent(t, got[i], e.want)
	}
}

// TestDenyPorts: a denied port is refused with EPERM over TCP/IPv4,
// TCP/IPv6, an IPv4-mapped destination on an AF_INET6 socket and
// unconnected UDP sendto (v4, v6, mapped), also for a grandchild; each
// refusal gives one JSON event with the right fields; the same policy does
// not touch a process outside the cgroup; the summary accounts for every
// event; the programs are attached while the monitor runs and gone after.
func TestDenyPorts(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	tcp4, tcp6 := p.tcp(t, "127.0.0.1:0"), p.tcp(t, "[::1]:0")
	udp4, udp6 := p.udp(t, "127.0.0.1:0"), p.udp(t, "[::1]:0")
	pol := writePolicy(t, `version: 1
network:
  deny_ports:
    - {port: %d, id: 40}
    - {port: %d, id: 41}
    - {port: %d, id: 42}
    - {port: %d, id: 43}
`, tcp4.Port(), tcp6.Port(), udp4.Port(), udp6.Port())
	m := monitor(t, pol, cg, "--output", "json")
	assaytest.RequireProgramCount(t, cg, 1)

	mapped4 := func(port uint16) string { return hostPort("::ffff:127.0.0.1", port) }
	cases := []probeCase{
		{name: "tcp4", action: "connect", args: []string{"tcp4", tcp4.String()}, tcp: tcp4,
			event: &netEvent{"connect", "blocked", 40, "inet", "tcp", "127.0.0.1", tcp4.Port(), false}},
		{name: "tcp6", action: "connect", args: []string{"tcp6", tcp6.String()}, tcp: tcp6,
			event: &netEvent{"connect", "blocked", 41, "inet6", "tcp", "::1", tcp6.Port(), false}},
		{name: "tcp6 mapped", action: "connect", args: []string{"tcp6", mapped4(tcp4.Port())}, tcp: tcp4,
			event: &netEvent{"connect", "blocked", 40, "inet6", "tcp", "::ffff:127.0.0.1", tcp4.Port(), true}},
		{name: "udp4 sendto", action: "sendto", args: []string{"udp4", udp4.String()}, udp: udp4,
			event: &netEvent{"sendmsg", "blocked", 42, "inet", "udp", "127.0.0.1", udp4.Port(), false}},
		{name: "udp6 sendto", action: "sendto", args: []string{"udp6", udp6.String()}, udp: udp6,
			event: &netEvent{"sendmsg", "blocked", 43, "inet6", "udp", "::1", udp6.Port(), false}},
		// The kernel hands a sendto(2) to an IPv4-mapped destination on
		// an AF_INET6 UDP socket to the IPv4 path (udpv6_sendmsg ->
		// udp_sendmsg), so the sendmsg4 program judges it; it must still
		// report the destination as the socket asked for it.
		{name: "udp6 sendto mapped", action: "sendto", args: []string{"udp6", mapped4(udp4.Port())}, udp: udp4,
			event: &netEvent{"sendmsg", "blocked", 42, "inet6", "udp", "::ffff:127.0.0.1", udp4.Port(), true}},
	}
	want := runCases(t, m, cg, cases)

	// A grandchild (forked by a probe in the cgroup) is judged too, and its
	// event carries its own pid.
	g := assaytest.Probe(t, &cg, "spawn-grandchild", "connect", "tcp4", tcp4.String())
	requireEPERM(t, "grandchild tcp4", g)
	if g.Via == 0 || g.Via == g.PID {
		t.Fatalf("grandchild pid %d, forked by %d: not a grandchild", g.PID, g.Via)
	}
	want = append(want, expectation{name: "grandchild", want: netEvent{"connect", "blocked", 40, "inet", "tcp", "127.0.0.1", tcp4.Port(), false}.json(cg, g)})
	m.WaitEvents(len(want), eventTimeout)

	for _, l := range []*assaytest.TCPListener{tcp4, tcp6} {
		if got := l.Accepted(); len(got) != 0 {
			t.Errorf("listener %s accepted blocked connections from %v", l.Addr, got)
		}
	}
	for _, l := range []*assaytest.UDPListener{udp4, udp6} {
		if got := l.Received(); len(got) != 0 {
			t.Errorf("UDP %s received blocked datagrams %v", l.Addr, got)
		}
	}

	// The same destinations from a process outside the cgroup: untouched,
	// and no event.
	for _, c := range cases {
		r := assaytest.Probe(t, nil, c.action, c.args...)
		requireOK(t, "outside: "+c.name, r)
		if c.tcp != nil {
			requireAccepted(t, c.tcp, r)
		} else {
			requireReceived(t, c.udp, r)
		}
	}

	res := m.Stop()
	checkAccounting(t, res, len(want))
	checkEvents(t, res.Events, want)
	if res.Summary.Received != res.Summary.Socket.Emitted {
		t.Errorf("summary received=%d, emitted=%d", res.Summary.Received, res.Summary.Socket.Emitted)
	}
	assaytest.RequireDetached(t, cg)
}

// TestAllowCIDRs: with allow_cidrs [127.0.0.2/32] a destination outside it
// is refused under rule 1000000 (IPv4, IPv6 - the allow list has no IPv6
// prefix - and mapped), while 127.0.0.2, also as a mapped address, reaches
// a real listener.
func TestAllowCIDRs(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	out4, in4, out6 := p.tcp(t, "127.0.0.1:0"), p.tcp(t, "127.0.0.2:0"), p.tcp(t, "[::1]:0")
	outUDP := p.udp(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  allow_cidrs: [127.0.0.2/32]\n")
	m := monitor(t, pol, cg, "--output", "json")

	const notInAllow = 1000000
	cases := []probeCase{
		{name: "outside allow tcp4", action: "connect", args: []string{"tcp4", out4.String()},
			event: &netEvent{"connect", "blocked", notInAllow, "inet", "tcp", "127.0.0.1", out4.Port(), false}},
		{name: "inside allow tcp4", action: "connect", args: []string{"tcp4", in4.String()}, tcp: in4},
		{name: "outside allow tcp6", action: "connect", args: []string{"tcp6", out6.String()},
			event: &netEvent{"connect", "blocked", notInAllow, "inet6", "tcp", "::1", out6.Port(), false}},
		{name: "inside allow mapped", action: "connect", args: []string{"tcp6", hostPort("::ffff:127.0.0.2", in4.Port())}, tcp: in4},
		{name: "outside allow mapped", action: "connect", args: []string{"tcp6", hostPort("::ffff:127.0.0.1", out4.Port())},
			event: &netEvent{"connect", "blocked", notInAllow, "inet6", "tcp", "::ffff:127.0.0.1", out4.Port(), true}},
		{name: "outside allow udp4", action: "sendto", args: []string{"udp4", outUDP.String()},
			event: &netEvent{"sendmsg", "blocked", notInAllow, "inet", "udp", "127.0.0.1", outUDP.Port(), false}},
	}
	want := runCases(t, m, cg, cases)
	res := m.Stop()
	checkAccounting(t, res, len(want))
	checkEvents(t, res.Events, want)
	if got := out4.Accepted(); len(got) != 0 {
		t.Errorf("%s accepted blocked connections from %v", out4.Addr, got)
	}
	assaytest.RequireDetached(t, cg)
}

// TestDenyBeatsAllow: deny_ports and deny_cidrs win over allow_cidrs.
func TestDenyBeatsAllow(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	portDenied, cidrDenied, allowed := p.tcp(t, "127.0.0.1:0"), p.tcp(t, "127.0.0.3:0"), p.tcp(t, "127.0.0.1:0")
	pol := writePolicy(t, `version: 1
network:
  allow_cidrs: [127.0.0.0/8]
  deny_ports: [{port: %d, id: 50}]
  deny_cidrs: [{cidr: 127.0.0.3/32, id: 51}]
`, portDenied.Port())
	m := monitor(t, pol, cg, "--output", "json")
	cases := []probeCase{
		{name: "port deny beats allow", action: "connect", args: []string{"tcp4", portDenied.String()},
			event: &netEvent{"connect", "blocked", 50, "inet", "tcp", "127.0.0.1", portDenied.Port(), false}},
		{name: "cidr deny beats allow", action: "connect", args: []string{"tcp4", cidrDenied.String()},
			event: &netEvent{"connect", "blocked", 51, "inet", "tcp", "127.0.0.3", cidrDenied.Port(), false}},
		{name: "cidr deny beats allow, mapped", action: "connect", args: []string{"tcp6", hostPort("::ffff:127.0.0.3", cidrDenied.Port())},
			event: &netEvent{"connect", "blocked", 51, "inet6", "tcp", "::ffff:127.0.0.3", cidrDenied.Port(), true}},
		{name: "allowed", action: "connect", args: []string{"tcp4", allowed.String()}, tcp: allowed},
	}
	want := runCases(t, m, cg, cases)
	res := m.Stop()
	checkAccounting(t, res, len(want))
	checkEvents(t, res.Events, want)
	assaytest.RequireDetached(t, cg)
}

// TestStackedMonitors: two monitors on the same cgroup (A denies port X, B
// port Y) both enforce, each reports only its own blocks, and stopping B
// leaves A attached and enforcing.
func TestStackedMonitors(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	x, y := p.tcp(t, "127.0.0.1:0"), p.tcp(t, "127.0.0.1:0")
	polA := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 1}]\n", x.Port())
	polB := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %d, id: 2}]\n", y.Port())
	a := monitor(t, polA, cg, "--output", "json")
	b := monitor(t, polB, cg, "--output", "json")
	assaytest.RequireProgramCount(t, cg, 2)

	evX := netEvent{"connect", "blocked", 1, "inet", "tcp", "127.0.0.1", x.Port(), false}
	evY := netEvent{"connect", "blocked", 2, "inet", "tcp", "127.0.0.1", y.Port(), false}
	rx := assaytest.Probe(t, &cg, "connect", "tcp4", x.String())
	requireEPERM(t, "port X with A and B", rx)
	ry := assaytest.Probe(t, &cg, "connect", "tcp4", y.String())
	requireEPERM(t, "port Y with A and B", ry)
	a.WaitEvents(1, eventTimeout)
	b.WaitEvents(1, eventTimeout)

	resB := b.Stop()
	assaytest.RequireProgramCount(t, cg, 1)
	ry2 := assaytest.Probe(t, &cg, "connect", "tcp4", y.String())
	requireOK(t, "port Y after B stopped", ry2)
	requireAccepted(t, y, ry2)
	rx2 := assaytest.Probe(t, &cg, "connect", "tcp4", x.String())
	requireEPERM(t, "port X after B stopped", rx2)
	a.WaitEvents(2, eventTimeout)
	resA := a.Stop()
	assaytest.RequireDetached(t, cg)

	checkAccounting(t, resB, 1)
	if len(resB.Events) == 1 {
		checkEvent(t, resB.Events[0], evY.json(cg, ry))
	}
	checkAccounting(t, resA, 2)
	if len(resA.Events) == 2 {
		checkEvent(t, resA.Events[0], evX.json(cg, rx))
		checkEvent(t, resA.Events[1], evX.json(cg, rx2))
	}
	if got := x.Accepted(); len(got) != 0 {
		t.Errorf("port X accepted blocked connections from %v", got)
	}
}

// TestAuditMode: --audit, and mode: audit in the policy, let the
// connection and the datagram through and report AUDIT lines.
func TestAuditMode(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	for _, how := range []string{"flag", "policy"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			cg := assaytest.NewCgroup(t)
			p := ports{}
			tcp4, udp6 := p.tcp(t, "127.0.0.1:0"), p.udp(t, "[::1]:0")
			mode, extra := "enforce", []string{"--audit"}
			if how == "policy" {
				mode, extra = "audit", nil
			}
			pol := writePolicy(t, "version: 1\nmode: %s\nnetwork:\n  deny_ports: [{port: %d, id: 40}, {port: %d, id: 41}]\n", mode, tcp4.Port(), udp6.Port())
			m := monitor(t, pol, cg, extra...)

			rc := assaytest.Probe(t, &cg, "connect", "tcp4", tcp4.String())
			requireOK(t, "audited connect", rc)
			requireAccepted(t, tcp4, rc)
			rs := assaytest.Probe(t, &cg, "sendto", "udp6", udp6.String())
			requireOK(t, "audited sendto", rs)
			requireReceived(t, udp6, rs)
			m.WaitEvents(2, eventTimeout)
			res := m.Stop()

			if !hasPrefix(res.Stderr, "assay: auditing "+pol) {
				t.Errorf("no \"assay: auditing %s\" readiness line:\n%s", pol, res.StderrText())
			}
			want := []string{
				fmt.Sprintf("[PID %d] 🔎 AUDIT CONNECT: dst=%s proto=tcp cgroup=%d rule_id=40 family=inet comm=%s tid=%d",
					rc.PID, tcp4.Addr, cg.ID, rc.Comm, rc.TID),
				fmt.Sprintf("[PID %d] 🔎 AUDIT SENDMSG: dst=%s proto=udp cgroup=%d rule_id=41 family=inet6 comm=%s tid=%d",
					rs.PID, udp6.Addr, cg.ID, rs.Comm, rs.TID),
			}
			checkLines(t, "stdout", res.Stdout, want)
			checkAccounting(t, res, 2)
			assaytest.RequireDetached(t, cg)
		})
	}
}
