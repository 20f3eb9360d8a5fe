package assaytest

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TCPListener is a loopback TCP listener that accepts and records every
// connection (closing it at once) until the test ends.
type TCPListener struct {
	// Addr is the listening address, e.g. 127.0.0.1:41234 or [::1]:41234.
	Addr     netip.AddrPort
	l        net.Listener
	accepted chan netip.AddrPort
}

// ListenTCP listens on addr ("127.0.0.1:0", "[::1]:0", "127.0.0.2:0": port
// 0 picks a free one). An IPv4 address listens IPv4-only, an IPv6 one
// IPv6-only.
func ListenTCP(t testing.TB, addr string) *TCPListener {
	t.Helper()
	network, err := netFor("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	tl := &TCPListener{
		Addr:     l.Addr().(*net.TCPAddr).AddrPort(),
		l:        l,
		accepted: make(chan netip.AddrPort, 1024),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			c.Close()
			select {
			case tl.accepted <- netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()):
			default:
			}
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return tl
}

// Port is the listening port.
func (l *TCPListener) Port() uint16 { return l.Addr.Port() }

// String is the address, for probe arguments.
func (l *TCPListener) String() string { return l.Addr.String() }

// WaitAccept waits for the next accepted connection and returns its remote
// address (IPv4-mapped addresses unmapped). It fails the test after timeout.
func (l *TCPListener) WaitAccept(t testing.TB, timeout time.Duration) netip.AddrPort {
	t.Helper()
	select {
	case ap := <-l.accepted:
		return ap
	case <-time.After(timeout):
		t.Fatalf("listener %s: no connection accepted within %v", l.Addr, timeout)
	}
	return netip.AddrPort{}
}

// Accepted returns the remote addresses of connections accepted and not yet
// returned by WaitAccept, without waiting.
func (l *TCPListener) Accepted() []netip.AddrPort {
	var out []netip.AddrPort
	for {
		select {
		case ap := <-l.accepted:
			out = append(out, ap)
		default:
			return out
		}
	}
}

// UDPPacket is one datagram a UDPListener received.
type UDPPacket struct {
	From netip.AddrPort // IPv4-mapped addresses unmapped
	Data string
}

// UDPListener is a loopback UDP socket recording every datagram it gets.
type UDPListener struct {
	Addr    netip.AddrPort
	c       *net.UDPConn
	packets chan UDPPacket
}

// ListenUDP binds addr ("127.0.0.1:0", "[::1]:0", ...) until the test ends.
func ListenUDP(t testing.TB, addr string) *UDPListener {
	t.Helper()
	network, err := netFor("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	ul := &UDPListener{Addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), c: c, packets: make(chan UDPPacket, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			select {
			case ul.packets <- UDPPacket{From: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), Data: string(buf[:n])}:
			default:
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return ul
}

// Port is the bound port.
func (l *UDPListener) Port() uint16 { return l.Addr.Port() }

// String is the address, for probe arguments.
func (l *UDPListener) String() string { return l.Addr.String() }

// WaitPacket waits for the next datagram; it fails the test after timeout.
func (l *UDPListener) WaitPacket(t testing.TB, timeout time.Duration) UDPPacket {
	t.Helper()
	select {
	case p := <-l.packets:
		return p
	case <-time.After(timeout):
		t.Fatalf("UDP %s: no datagram within %v", l.Addr, timeout)
	}
	return UDPPacket{}
}

// Received returns the datagrams received and not yet returned by
// WaitPacket, without waiting.
func (l *UDPListener) Received() []UDPPacket {
	var out []UDPPacket
	for {
		select {
		case p := <-l.packets:
			out = append(out, p)
		default:
			return out
		}
	}
}

func netFor(proto, addr string) (string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", err
	}
	if ap.Addr().Is4() {
		return proto + "4", nil
	}
	return proto + "6", nil
}
