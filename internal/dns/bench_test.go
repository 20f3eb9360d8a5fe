package dns

import (
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/assaymcp/assay/internal/dns/dnstest"
)

// BenchmarkLookup: one A query over UDP, to the test upstream directly and
// through assay's resolver (user space only: forwarding, policy, learning
// into a map). The kernel redirect's cost is measured by running a client
// under `assay run` (see the README, "Domain names").
//
//	go test -run '^$' -bench Lookup ./internal/dns/
func BenchmarkLookup(b *testing.B) {
	up := dnstest.Start(b, "127.0.0.1", []string{"ok.test. 60 IN A 127.0.0.11"})
	t := NewTable(&mapSink{m: map[Key]uint32{}}, 10*time.Second)
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{up.Addr}, Policy: testPolicy(b, ""), Learn: t.Learn, Rate: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	s, err := Listen(r)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	v4, _ := s.Addrs()
	for _, tc := range []struct {
		name string
		srv  netip.AddrPort
	}{{"upstream", up.Addr}, {"assay", v4}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
			m := new(mdns.Msg)
			m.SetQuestion("ok.test.", mdns.TypeA)
			for b.Loop() {
				if resp, _, err := c.Exchange(m, tc.srv.String()); err != nil || resp.Rcode != mdns.RcodeSuccess {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
	}
}
