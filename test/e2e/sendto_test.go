package e2e_test

import (
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
)

// TestSendtoCIDRs: unconnected UDP sendto(2) is judged by deny_cidrs (the
// sendmsg4/6 programs), over IPv4, IPv6 and to an IPv4-mapped destination
// on an AF_INET6 socket (judged by the IPv4 prefix); every refusal gives one
// event under the prefix's id and no datagram arrives; a port outside no
// prefix still goes through, and a process outside the cgroup is untouched.
func TestSendtoCIDRs(t *testing.T) {
	assaytest.Privileged(t)
	t.Parallel()
	cg := assaytest.NewCgroup(t)
	p := ports{}
	denied4, denied6 := p.udp(t, "127.0.0.3:0"), p.udp(t, "[::1]:0")
	allowed4 := p.udp(t, "127.0.0.1:0")
	pol := writePolicy(t, `version: 1
network:
  deny_cidrs:
    - {cidr: 127.0.0.3/32, id: 51}
    - {cidr: "::1/128", id: 52}
`)
	m := monitor(t, pol, cg, "--output", "json")

	mapped := hostPort("::ffff:127.0.0.3", denied4.Port())
	cases := []probeCase{
		{name: "udp4 sendto", action: "sendto", args: []string{"udp4", denied4.String()}, udp: denied4,
			event: &netEvent{"sendmsg", "blocked", 51, "inet", "udp", "127.0.0.3", denied4.Port(), false}},
		{name: "udp6 sendto", action: "sendto", args: []string{"udp6", denied6.String()}, udp: denied6,
			event: &netEvent{"sendmsg", "blocked", 52, "inet6", "udp", "::1", denied6.Port(), false}},
		{name: "udp6 sendto mapped", action: "sendto", args: []string{"udp6", mapped}, udp: denied4,
			event: &netEvent{"sendmsg", "blocked", 51, "inet6", "udp", "::ffff:127.0.0.3", denied4.Port(), true}},
		{name: "udp4 sendto outside every prefix", action: "sendto", args: []string{"udp4", allowed4.String()}, udp: allowed4},
	}
	want := runCases(t, m, cg, cases)
	m.WaitEvents(len(want), eventTimeout)
	for _, l := range []*assaytest.UDPListener{denied4, denied6} {
		if got := l.Received(); len(got) != 0 {
			t.Errorf("UDP %s received blocked datagrams %v", l.Addr, got)
		}
	}
	for _, c := range cases[:3] {
		r := assaytest.Probe(t, nil, c.action, c.args...)
		requireOK(t, "outside: "+c.name, r)
		requireReceived(t, c.udp, r)
	}
	res := m.Stop()
	checkAccounting(t, res, len(want))
	checkEvents(t, res.Events, want)
}
