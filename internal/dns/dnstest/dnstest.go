// Package dnstest runs a test upstream DNS server (miekg/dns) on a
// loopback address, answering *.test names from a table, and records every
// name it was asked. Tests never resolve through /etc/resolv.conf.
package dnstest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Upstream is a running test server.
type Upstream struct {
	Addr  netip.AddrPort // UDP and TCP
	mu    sync.Mutex
	asked []string
	zone  map[string][]mdns.RR
	// Silent names are never answered (an upstream timeout).
	silent   map[string]bool
	udp, tcp *mdns.Server
}

// Start serves records (zone-file lines such as "a.test. 60 IN A
// 127.0.0.1") on host (a loopback address, e.g. "127.0.0.1") at a port
// the kernel picks, over UDP and TCP, until the test ends. A name listed
// in silent is never answered.
func Start(t testing.TB, host string, records []string, silent ...string) *Upstream {
	t.Helper()
	u := &Upstream{zone: map[string][]mdns.RR{}, silent: map[string]bool{}}
	for _, s := range silent {
		u.silent[mdns.Fqdn(strings.ToLower(s))] = true
	}
	for _, line := range records {
		rr, err := mdns.NewRR(line)
		if err != nil {
			t.Fatalf("dnstest: record %q: %v", line, err)
		}
		name := strings.ToLower(rr.Header().Name)
		u.zone[name] = append(u.zone[name], rr)
	}
	var pc net.PacketConn
	var l net.Listener
	for range 16 {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("dnstest: no port free for both UDP and TCP")
	}
	u.Addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	h := mdns.HandlerFunc(u.serve)
	u.udp = &mdns.Server{PacketConn: pc, Handler: h}
	u.tcp = &mdns.Server{Listener: l, Handler: h}
	started := make(chan struct{}, 2)
	u.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	u.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = u.udp.ActivateAndServe() }()
	go func() { _ = u.tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("dnstest: server did not start")
		}
	}
	t.Cleanup(func() {
		_ = u.udp.Shutdown()
		_ = u.tcp.Shutdown()
	})
	return u
}

// Asked returns the names asked so far (lower case, with the trailing dot),
// in order.
func (u *Upstream) Asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.asked...)
}

// WasAsked reports whether name (any case, with or without the dot) was
// asked.
func (u *Upstream) WasAsked(name string) bool {
	n := mdns.Fqdn(strings.ToLower(name))
	for _, a := range u.Asked() {
		if a == n {
			return true
		}
	}
	return false
}

func (u *Upstream) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	u.mu.Lock()
	u.asked = append(u.asked, name)
	silent := u.silent[name]
	u.mu.Unlock()
	if silent {
		return
	}
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	cur := name
	found := false
	for range 16 {
		rrs := u.zone[cur]
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*mdns.CNAME); ok {
				m.Answer = append(m.Answer, rr)
				next = strings.ToLower(c.Target)
				found = true
				continue
			}
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
			found = true
		}
		if next == "" {
			break
		}
		cur = next
	}
	if !found {
		m.Rcode = mdns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}
