package e2e_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/events"
)

// TestUnspecifiedAddresses: the kernel turns a destination of 0.0.0.0, ::
// or ::ffff:0.0.0.0 into a loopback address after the cgroup hooks ran, so
// `deny_cidrs: [127.0.0.0/8, ::1/128]` must refuse them too. An
// unprivileged process (uid 65534) in the cgroup tries each over TCP, UDP
// (connect and unconnected sendto), TCP Fast Open (sendto MSG_FASTOPEN),
// io_uring (IORING_OP_CONNECT) and MPTCP, on IPv4 and IPv6 sockets: every
// attempt gets EPERM and one event naming the loopback address judged and
// the address asked for (requested_addr), and no listener sees anything.
// The same attempts from outside the cgroup reach the listeners, so the
// addresses do lead to them. A socket bound to 127.0.0.2 that connects to
// 0.0.0.0 reaches 127.0.0.2: that is the address judged and reported.
func TestUnspecifiedAddresses(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	tcp4, tcp6 := p.tcp(t, "127.0.0.1:0"), p.tcp(t, "[::1]:0")
	udp4, udp6 := p.udp(t, "127.0.0.1:0"), p.udp(t, "[::1]:0")
	bound := p.tcp(t, "127.0.0.2:0")
	pol := writePolicy(t, `version: 1
network:
  deny_cidrs:
    - {cidr: 127.0.0.0/8, id: 50}
    - {cidr: "::1/128", id: 51}
`)
	m := monitor(t, pol, cg, "--output", "json")

	any4 := func(port uint16) string { return hostPort("0.0.0.0", port) }
	any6 := func(port uint16) string { return hostPort("::", port) }
	anyMapped := func(port uint16) string { return hostPort("::ffff:0.0.0.0", port) }
	type unspecCase struct {
		name      string
		args      []string // the net probe's arguments
		tcp       *assaytest.TCPListener
		udp       *assaytest.UDPListener
		ev        netEvent
		requested string
	}
	cases := []unspecCase{
		{"tcp4 connect 0.0.0.0", []string{"connect", "tcp4", any4(tcp4.Port())}, tcp4, nil,
			netEvent{"connect", "blocked", 50, "inet", "tcp", "127.0.0.1", tcp4.Port(), false}, "0.0.0.0"},
		{"tcp6 connect ::", []string{"connect", "tcp6", any6(tcp6.Port())}, tcp6, nil,
			netEvent{"connect", "blocked", 51, "inet6", "tcp", "::1", tcp6.Port(), false}, "::"},
		{"tcp6 connect ::ffff:0.0.0.0", []string{"connect", "tcp6", anyMapped(tcp4.Port())}, tcp4, nil,
			netEvent{"connect", "blocked", 50, "inet6", "tcp", "::ffff:127.0.0.1", tcp4.Port(), true}, "::ffff:0.0.0.0"},
		{"udp4 sendto 0.0.0.0", []string{"sendto", "udp4", any4(udp4.Port())}, nil, udp4,
			netEvent{"sendmsg", "blocked", 50, "inet", "udp", "127.0.0.1", udp4.Port(), false}, "0.0.0.0"},
		{"udp6 sendto ::", []string{"sendto", "udp6", any6(udp6.Port())}, nil, udp6,
			netEvent{"sendmsg", "blocked", 51, "inet6", "udp", "::1", udp6.Port(), false}, "::"},
		{"udp6 sendto ::ffff:0.0.0.0", []string{"sendto", "udp6", anyMapped(udp4.Port())}, nil, udp4,
			netEvent{"sendmsg", "blocked", 50, "inet6", "udp", "::ffff:127.0.0.1", udp4.Port(), true}, "::ffff:0.0.0.0"},
		{"udp4 connect 0.0.0.0", []string{"connect", "udp4", any4(udp4.Port())}, nil, nil,
			netEvent{"connect", "blocked", 50, "inet", "udp", "127.0.0.1", udp4.Port(), false}, "0.0.0.0"},
		{"udp6 connect ::", []string{"connect", "udp6", any6(udp6.Port())}, nil, nil,
			netEvent{"connect", "blocked", 51, "inet6", "udp", "::1", udp6.Port(), false}, "::"},
		{"tcp4 fast open 0.0.0.0", []string{"fastopen", "tcp4", any4(tcp4.Port())}, tcp4, nil,
			netEvent{"connect", "blocked", 50, "inet", "tcp", "127.0.0.1", tcp4.Port(), false}, "0.0.0.0"},
		{"tcp6 fast open ::", []string{"fastopen", "tcp6", any6(tcp6.Port())}, tcp6, nil,
			netEvent{"connect", "blocked", 51, "inet6", "tcp", "::1", tcp6.Port(), false}, "::"},
		{"tcp4 io_uring connect 0.0.0.0", []string{"uring-connect", "tcp4", any4(tcp4.Port())}, tcp4, nil,
			netEvent{"connect", "blocked", 50, "inet", "tcp", "127.0.0.1", tcp4.Port(), false}, "0.0.0.0"},
		{"tcp6 io_uring connect ::", []string{"uring-connect", "tcp6", any6(tcp6.Port())}, tcp6, nil,
			netEvent{"connect", "blocked", 51, "inet6", "tcp", "::1", tcp6.Port(), false}, "::"},
		{"mptcp4 connect 0.0.0.0", []string{"connect", "mptcp4", any4(tcp4.Port())}, tcp4, nil,
			netEvent{"connect", "blocked", 50, "inet", "tcp", "127.0.0.1", tcp4.Port(), false}, "0.0.0.0"},
		{"mptcp6 connect ::", []string{"connect", "mptcp6", any6(tcp6.Port())}, tcp6, nil,
			netEvent{"connect", "blocked", 51, "inet6", "tcp", "::1", tcp6.Port(), false}, "::"},
		{"tcp4 bound to 127.0.0.2 connect 0.0.0.0", []string{"connect", "tcp4", any4(bound.Port()), "127.0.0.2"}, bound, nil,
			netEvent{"connect", "blocked", 50, "inet", "tcp", "127.0.0.2", bound.Port(), false}, "0.0.0.0"},
	}
	var want []events.JSONEvent
	for _, c := range cases {
		// Outside the cgroup, the unspecified address reaches loopback.
		if c.tcp != nil || c.udp != nil {
			r := assaytest.Probe(t, nil, "net", c.args...)
			requireOK(t, c.name+" outside the cgroup", r)
			if c.tcp != nil {
				requireAccepted(t, c.tcp, r)
			} else {
				requireReceived(t, c.udp, r)
			}
		}
		// Inside, as an unprivileged user: refused, and reported.
		r := assaytest.Probe(t, &cg, "as-user", append([]string{"65534", "65534", "net"}, c.args...)...)
		requireEPERM(t, c.name, r)
		e := c.ev.json(cg, r)
		e.RequestedAddr = c.requested
		want = append(want, e)
		if lines := m.WaitEvents(len(want), eventTimeout); len(lines) != len(want) {
			t.Fatalf("%s: %d event lines, want %d:\n%s", c.name, len(lines), len(want), lines)
		}
	}
	for _, l := range []*assaytest.TCPListener{tcp4, tcp6, bound} {
		if got := l.Accepted(); len(got) != 0 {
			t.Errorf("TCP %s accepted %v from the cgroup", l.Addr, got)
		}
	}
	for _, l := range []*assaytest.UDPListener{udp4, udp6} {
		if got := l.Received(); len(got) != 0 {
			t.Errorf("UDP %s received %v from the cgroup", l.Addr, got)
		}
	}
	res := m.Stop()
	checkAccounting(t, res, len(want))
	got := res.Events
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		checkEvent(t, got[i], want[i])
	}
}

// TestUnspecifiedNotOverBlocked: 0.0.0.0 from an unbound socket goes to
// 127.0.0.1, so a rule for 127.0.0.2 alone does not refuse it.
func TestUnspecifiedNotOverBlocked(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	tcp4 := p.tcp(t, "127.0.0.1:0")
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_cidrs: [{cidr: 127.0.0.2/32, id: 52}]\n")
	m := monitor(t, pol, cg, "--output", "json")
	r := assaytest.Probe(t, &cg, "as-user", "65534", "65534", "net", "connect", "tcp4", hostPort("0.0.0.0", tcp4.Port()))
	requireOK(t, "tcp4 connect 0.0.0.0 with 127.0.0.2 denied", r)
	requireAccepted(t, tcp4, r)
	checkAccounting(t, m.Stop(), 0)
}
