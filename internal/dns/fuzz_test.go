package dns

import (
	"context"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzHandle feeds arbitrary messages to the resolver's handling code (the
// miekg/dns parser included), with an upstream that answers everything
// with the question's name as a CNAME loop and an address: it must never
// panic, never answer a response, and always answer with a header whose id
// is the query's.
func FuzzHandle(f *testing.F) {
	m := new(mdns.Msg)
	m.SetQuestion("ok.test.", mdns.TypeA)
	m.SetEdns0(4096, true)
	b, _ := m.Pack()
	f.Add(b, false)
	m.SetQuestion("a.b.wild.test.", mdns.TypeAAAA)
	b, _ = m.Pack()
	f.Add(b, true)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, false)
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'o', 'k'}, false)
	p := testPolicy(f, "")
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Policy: p, Rate: 1 << 30,
		Learn: func(a Answer) error {
			if len(a.CNAMEs) > MaxChain {
				panic("chain too long")
			}
			return nil
		}})
	if err != nil {
		f.Fatal(err)
	}
	r.exchange = func(ctx context.Context, q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
		resp := new(mdns.Msg)
		resp.SetReply(q)
		n := q.Question[0].Name
		resp.Answer = append(resp.Answer,
			&mdns.CNAME{Hdr: mdns.RR_Header{Name: n, Rrtype: mdns.TypeCNAME, Class: 1, Ttl: 5}, Target: n},
			&mdns.A{Hdr: mdns.RR_Header{Name: n, Rrtype: mdns.TypeA, Class: 1, Ttl: 5}, A: []byte{127, 0, 0, 1}})
		return resp, nil
	}
	f.Fuzz(func(t *testing.T, msg []byte, tcp bool) {
		out := r.Handle(context.Background(), msg, tcp)
		if out == nil {
			return
		}
		if len(msg) < 12 || msg[2]&0x80 != 0 {
			t.Fatalf("answered %x", msg)
		}
		if len(out) < 12 || out[0] != msg[0] || out[1] != msg[1] || out[2]&0x80 == 0 {
			t.Fatalf("answer %x to %x", out, msg)
		}
	})
}
