package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limits of the TCP side.
const (
	// MaxTCPConns bounds the TCP connections served at once; more are
	// closed at once.
	MaxTCPConns = 64
	// TCPIdle closes a TCP connection that sends nothing for this long
	// (and bounds the time a partial message may take).
	TCPIdle = 10 * time.Second
)

// Server serves a Resolver on UDP and TCP sockets: one pair on
// 127.0.0.1 and, when the host has IPv6 loopback, one on ::1, each on a
// port the kernel picks (see Addrs).
type Server struct {
	r      *Resolver
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	udp    []*net.UDPConn
	tcp    []*net.TCPListener
	v4, v6 netip.AddrPort
	conns  chan struct{}
}

// Listen starts a Server for r on the loopback addresses. The IPv4 and
// IPv6 sockets share nothing: each family has its own port, the same for
// UDP and TCP.
func Listen(r *Resolver) (*Server, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{r: r, ctx: ctx, cancel: cancel, conns: make(chan struct{}, MaxTCPConns)}
	var err error
	if s.v4, err = s.listen("127.0.0.1"); err != nil {
		s.Close()
		return nil, err
	}
	if v6, err := s.listen("::1"); err == nil {
		s.v6 = v6
	}
	return s, nil
}

// listen binds a UDP and a TCP socket on the same port of host.
func (s *Server) listen(host string) (netip.AddrPort, error) {
	var last error
	for range 16 {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("dns: listen on %s: %w", host, err)
		}
		ap := u.LocalAddr().(*net.UDPAddr).AddrPort()
		t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			u.Close()
			last = err
			continue // the port is taken for TCP: another one
		}
		s.udp = append(s.udp, u)
		s.tcp = append(s.tcp, t)
		s.wg.Add(2)
		go s.serveUDP(u)
		go s.serveTCP(t)
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	return netip.AddrPort{}, fmt.Errorf("dns: listen on %s: %w", host, last)
}

// Addrs returns where the server listens: IPv4 and IPv6 (the zero
// AddrPort when the host has no IPv6 loopback).
func (s *Server) Addrs() (v4, v6 netip.AddrPort) { return s.v4, s.v6 }

// Resolver returns the server's resolver.
func (s *Server) Resolver() *Resolver { return s.r }

// Close stops serving and waits for the queries in progress (each is
// bounded by the resolver's timeout).
func (s *Server) Close() error {
	s.cancel()
	var errs []error
	for _, u := range s.udp {
		errs = append(errs, u.Close())
	}
	for _, t := range s.tcp {
		errs = append(errs, t.Close())
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) serveUDP(u *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if out := s.r.Handle(s.ctx, msg, false); out != nil {
				_, _ = u.WriteToUDPAddrPort(out, from)
			}
		}()
	}
}

func (s *Server) serveTCP(l *net.TCPListener) {
	defer s.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case s.conns <- struct{}{}:
		default:
			c.Close() // too many connections
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.conns }()
			s.serveConn(c)
		}()
	}
}

// serveConn answers the messages of one TCP connection in order.
func (s *Server) serveConn(c *net.TCPConn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	var lenBuf [2]byte
	buf := make([]byte, 65535)
	for {
		_ = c.SetReadDeadline(time.Now().Add(TCPIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		out := s.r.Handle(s.ctx, buf[:n], true)
		if out == nil {
			continue
		}
		if len(out) > 65535 {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(TCPIdle))
		frame := make([]byte, 2+len(out))
		binary.BigEndian.PutUint16(frame, uint16(len(out)))
		copy(frame[2:], out)
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}
