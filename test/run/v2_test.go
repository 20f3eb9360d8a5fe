package run_test

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// helperV2 runs the helper modes of the version 2 tests; ok is false for
// other modes.
func helperV2(mode string, args []string) (status int, ok bool) {
	switch mode {
	case "net2": // PROTO:ADDR:PORT ...: connect (tcp) or sendto (udp), print "ARG RESULT"
		for _, a := range args {
			proto, ap, _ := strings.Cut(a, ":")
			fmt.Printf("%s %s\n", a, errName(netTry(proto, ap)))
		}
		return 0, true
	}
	return 0, false
}

// netTry connects a TCP socket or sends one UDP datagram (unconnected:
// the sendmsg path) to ap, with an AF_INET socket for IPv4 addresses and
// an AF_INET6 one otherwise (IPv4-mapped addresses included).
func netTry(proto, ap string) error {
	dst, err := netip.ParseAddrPort(ap)
	if err != nil {
		return err
	}
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	if dst.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if proto == "udp" {
		return unix.Sendto(fd, []byte("assay v2 test"), 0, sa)
	}
	return unix.Connect(fd, sa)
}

func freePort(t *testing.T, network, addr string) (uint16, func()) {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), func() { c.Close() }
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port), func() { l.Close() }
}

// TestRunNetworkV2 runs a version 2 network section with real sockets on
// loopback: allow entries with ports and protocols, a deny entry that wins
// over an allow entry, default deny; TCP and UDP, IPv4 and IPv6, and an
// IPv4-mapped destination on an IPv6 socket (judged as IPv4).
func TestRunNetworkV2(t *testing.T) {
	e := newEnv(t)
	a, closeA := freePort(t, "tcp4", "127.0.0.1:0")
	defer closeA()
	b, closeB := freePort(t, "tcp6", "[::1]:0")
	defer closeB()
	c, closeC := freePort(t, "udp4", "127.0.0.1:0")
	defer closeC()
	d, closeD := freePort(t, "udp6", "[::1]:0")
	defer closeD()
	x, closeX := freePort(t, "tcp4", "127.0.0.1:0")
	defer closeX()
	u, closeU := freePort(t, "tcp4", "127.0.0.1:0") // listened on, never allowed
	defer closeU()
	pol := e.policy(fmt.Sprintf(`version: 2
network:
  default: deny
  allow:
    - {cidr: 127.0.0.0/8, ports: [%d], proto: tcp, id: 20}
    - {cidr: "::1", ports: [%d, %d], id: 21}
    - {ports: [%d], proto: udp, id: 22}
    - {cidr: 127.0.0.1, port: %d, id: 23}
  deny:
    - {cidr: 127.0.0.0/8, port: %d, proto: tcp, id: 30}
`, a, b, d, c, x, x))
	cases := []struct {
		try    string
		result string
		rule   string // the rule id reported for a block
		noLine bool   // the event names another destination (unspecified addresses)
	}{
		{fmt.Sprintf("tcp:127.0.0.1:%d", a), "ok", "", false},
		{fmt.Sprintf("udp:127.0.0.1:%d", a), "EPERM", "1000000", false}, // proto mismatch: default
		{fmt.Sprintf("tcp:[::ffff:127.0.0.1]:%d", a), "ok", "", false},  // mapped: judged as IPv4
		{fmt.Sprintf("tcp:[::1]:%d", a), "EPERM", "1000000", false},     // the prefix is IPv4 only
		{fmt.Sprintf("tcp:[::1]:%d", b), "ok", "", false},
		{fmt.Sprintf("udp:[::1]:%d", d), "ok", "", false},
		{fmt.Sprintf("udp:[::1]:%d", b), "ok", "", false}, // both protocols
		{fmt.Sprintf("udp:127.0.0.1:%d", c), "ok", "", false},
		{fmt.Sprintf("udp:[::1]:%d", c), "ok", "", false},               // any address
		{fmt.Sprintf("tcp:127.0.0.1:%d", c), "EPERM", "1000000", false}, // entry 22 is UDP only
		{fmt.Sprintf("tcp:127.0.0.1:%d", x), "EPERM", "30", false},      // deny wins over allow 23
		{fmt.Sprintf("udp:127.0.0.1:%d", x), "ok", "", false},           // the deny entry is TCP only
		{fmt.Sprintf("tcp:127.0.0.1:%d", u), "EPERM", "1000000", false}, // no entry: default deny
		{fmt.Sprintf("udp:[::1]:%d", u), "EPERM", "1000000", false},
		// Unspecified destinations are judged as the loopback address
		// the kernel turns them into.
		{fmt.Sprintf("tcp:0.0.0.0:%d", a), "ok", "", false},
		{fmt.Sprintf("tcp:[::]:%d", b), "ok", "", false},
		{fmt.Sprintf("tcp:0.0.0.0:%d", u), "EPERM", "1000000", true},
	}
	args := []string{"--policy", pol, "--", "@", "net2"}
	var want strings.Builder
	for _, tc := range cases {
		args = append(args, tc.try)
		fmt.Fprintf(&want, "%s %s\n", tc.try, tc.result)
	}
	r := e.run(nil, args...)
	if r.status != 0 || r.stdout != want.String() {
		t.Fatalf("status %d, stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.status, r.stdout, want.String(), r.stderr)
	}
	blocks := 0
	for _, tc := range cases {
		if tc.rule == "" {
			continue
		}
		blocks++
		if tc.noLine {
			continue
		}
		proto, ap, _ := strings.Cut(tc.try, ":")
		kind := "CONNECT"
		if proto == "udp" {
			kind = "SENDMSG"
		}
		dst := netip.MustParseAddrPort(ap)
		re := fmt.Sprintf(`BLOCKED %s: dst=%s proto=%s cgroup=\d+ rule_id=%s `, kind, regexp.QuoteMeta(dst.String()), proto, tc.rule)
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("stderr lacks %s:\n%s", re, r.stderr)
		}
	}
	if !regexp.MustCompile(fmt.Sprintf(`Socket ringbuf: emitted=%d dropped=0`, blocks)).MatchString(r.stderr) {
		t.Errorf("want %d socket events:\n%s", blocks, r.stderr)
	}
	for _, re := range []string{
		`(?m)^assay:   rule 20\s+net_allow\s+127\.0\.0\.0/8 port \d+ tcp\s+cgroup-bpf$`,
		`(?m)^assay:   rule 30\s+net_deny\s+127\.0\.0\.0/8 port \d+ tcp\s+cgroup-bpf$`,
		`(?m)^assay:   rule 1000000\s+network_default\s+.*cgroup-bpf$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("report lacks %s:\n%s", re, r.stderr)
		}
	}
}
