package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// dnsPolicy is the example with a second resolver and a CIDR.
const dnsPolicy = `version: 2
network:
  default: deny
  allow:
    - {host: api.github.com, ports: [443], id: 30}
    - {host: "*.githubusercontent.com", ports: [443], id: 31}
    - {host: Exact.Test., port: 8080, proto: tcp}
    - {cidr: 127.0.0.0/8, ports: [9]}
dns:
  upstream: ["127.0.0.53:53", "127.0.0.54", "[::1]:5353"]
  refuse: refused
  grace: 3
`

func TestParseDNS(t *testing.T) {
	p, err := Parse("p.yaml", []byte(dnsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	checkV2(t, p)
	if !p.HasHosts() || p.NetAllow[2].Host != "exact.test" || p.NetAllow[2].ID != 1 || p.NetAllow[3].ID != 2 {
		t.Fatalf("allow entries %+v", p.NetAllow)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53"), netip.MustParseAddrPort("127.0.0.54:53"), netip.MustParseAddrPort("[::1]:5353")}
	if !p.DNS.Set || p.DNS.Refuse != RefuseRefused || p.DNS.Grace != 3 || len(p.DNS.Upstream) != 3 {
		t.Fatalf("dns %+v", p.DNS)
	}
	for i, a := range want {
		if p.DNS.Upstream[i] != a {
			t.Fatalf("upstream %d = %v, want %v", i, p.DNS.Upstream[i], a)
		}
	}
	if r, ok := p.RuleByID(DNSDefaultID); !ok || r.Kind != KindDNSDefault {
		t.Fatalf("RuleByID(DNSDefaultID) = %+v %v", r, ok)
	}
	if r, ok := p.RuleByID(31); !ok || r.Detail != "host *.githubusercontent.com port 443" {
		t.Fatalf("rule 31 %+v", r)
	}
	// Host entries never match by address.
	if d := p.NetVerdict(netip.MustParseAddr("127.0.0.1"), 443, ProtoTCP); d.Allowed {
		t.Fatalf("host entry matched an address: %+v", d)
	}
	for name, ids := range map[string][]uint32{
		"api.github.com":                 {30},
		"x.api.github.com":               nil,
		"githubusercontent.com":          nil, // the wildcard is not the bare name
		"raw.githubusercontent.com":      {31},
		"a.b.c.githubusercontent.com":    {31}, // any depth
		"xgithubusercontent.com":         nil,
		"exact.test":                     {1},
		NormalizeName("EXACT.test."):     {1},
		"evil.test":                      nil,
		"api.github.com.evil.test":       nil,
		"raw.githubusercontent.com.evil": nil,
	} {
		var got []uint32
		for _, r := range p.HostRules(name) {
			got = append(got, r.ID)
		}
		if len(got) != len(ids) || (len(ids) > 0 && got[0] != ids[0]) {
			t.Errorf("HostRules(%q) = %v, want %v", name, got, ids)
		}
	}
	d, err := Parse("p.yaml", []byte("version: 2\nnetwork: {default: deny, allow: [{host: a.test}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.DNS.Set || d.DNS.Grace != DefaultDNSGrace || d.DNS.Refuse != RefuseNXDomain {
		t.Fatalf("dns without a section %+v", d.DNS)
	}
}

func TestParseDNSErrors(t *testing.T) {
	net := "version: 2\nnetwork:\n  default: deny\n  allow:\n"
	for _, tc := range []struct {
		name, text string
		line       int
		field, msg string
	}{
		{"host and cidr", net + "    - {host: a.test, cidr: 10.0.0.0/8}\n", 5, "network.allow[0].cidr", "either cidr or host"},
		{"cidr and host", net + "    - {cidr: 10.0.0.0/8, host: a.test}\n", 5, "network.allow[0].host", "either cidr or host"},
		{"host in deny", "version: 2\nnetwork:\n  default: deny\n  deny:\n    - {host: a.test}\n", 5, "network.deny[0].host", "unknown field \"host\""},
		{"bare star", net + "    - {host: \"*\"}\n", 5, "network.allow[0].host", "every name"},
		{"inner star", net + "    - {host: \"a.*.test\"}\n", 5, "network.allow[0].host", "whole first label"},
		{"partial star", net + "    - {host: \"a*.test\"}\n", 5, "network.allow[0].host", "whole first label"},
		{"empty label", net + "    - {host: a..test}\n", 5, "network.allow[0].host", "empty label"},
		{"address", net + "    - {host: 10.0.0.1}\n", 5, "network.allow[0].host", "is an address: use cidr"},
		{"bad char", net + "    - {host: \"a b.test\"}\n", 5, "network.allow[0].host", "letters, digits"},
		{"long label", net + "    - {host: " + strings.Repeat("a", 64) + ".test}\n", 5, "network.allow[0].host", "longer than 63"},
		{"long name", net + "    - {host: " + strings.Repeat("abcdefghi.", 26) + "test}\n", 5, "network.allow[0].host", "longer than 253"},
		{"dash", net + "    - {host: -a.test}\n", 5, "network.allow[0].host", "start or end"},
		{"host twice", net + "    - {host: a.test}\n    - {host: A.test.}\n", 6, "network.allow[1]", "already listed at line 5"},
		{"host with default allow", "version: 2\nnetwork:\n  default: allow\n  allow: [{host: a.test}]\n", 4, "network.allow", "no effect with default: allow"},
		{"dns without hosts", "version: 2\nnetwork: {default: deny}\ndns:\n  refuse: nxdomain\n", 3, "dns", "needs at least one network.allow entry with host"},
		{"bad refuse", net + "    - {host: a.test}\ndns: {refuse: drop}\n", 6, "dns.refuse", "unknown answer \"drop\""},
		{"bad upstream", net + "    - {host: a.test}\ndns: {upstream: [resolver.test]}\n", 6, "dns.upstream[0]", "not an address"},
		{"upstream port 0", net + "    - {host: a.test}\ndns: {upstream: [\"127.0.0.1:0\"]}\n", 6, "dns.upstream[0]", "port above 0"},
		{"upstream twice", net + "    - {host: a.test}\ndns: {upstream: [127.0.0.1, \"127.0.0.1:53\"]}\n", 6, "dns.upstream[1]", "already listed"},
		{"grace range", net + "    - {host: a.test}\ndns: {grace: 3601}\n", 6, "dns.grace", "outside 0-3600"},
		{"unknown dns field", net + "    - {host: a.test}\ndns: {ttl: 3}\n", 6, "dns.ttl", "unknown field"},
		{"dns in v1", "version: 1\ndns: {}\n", 2, "dns", "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.text))
			if err == nil {
				t.Fatalf("no error; policy %+v", p)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v", err, err)
			}
			if pe.File != "p.yaml" || pe.Line != tc.line || pe.Field != tc.field || !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("error %q: want line %d field %q msg containing %q", err, tc.line, tc.field, tc.msg)
			}
		})
	}
}
