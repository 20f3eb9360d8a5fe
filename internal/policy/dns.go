package policy

// # Host entries and the dns section (version 2)
//
//	network:
//	  default: deny
//	  allow:
//	    - {host: api.github.com, ports: [443], id: 30}
//	    - {host: "*.githubusercontent.com", ports: [443], id: 31}
//	dns:
//	  upstream: ["127.0.0.53:53"]   # default: the nameservers of /etc/resolv.conf
//	  refuse: nxdomain              # nxdomain (default) | refused
//	  grace: 10                     # seconds a learned address outlives its TTL
//
// A host entry allows the addresses its name resolves to through assay's
// own resolver, on its ports and protocol. host is an exact name
// (api.github.com) or "*." followed by a name, which matches every name
// below it at any depth but not the name itself. Names are compared
// without case and without a trailing dot. Host entries exist only in
// network.allow, exclude cidr, and need network.default: deny (as every
// allow entry). A dns section needs at least one host entry.
//
// upstream entries are an IP address with an optional port (53 when left
// out): "127.0.0.53", "127.0.0.53:5353", "::1", "[::1]:5353".

import (
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DNSDefaultID is the id reported when a queried name matches no host
// entry (BLOCKED DNS).
const DNSDefaultID uint32 = 1000005

// KindDNSDefault is the kind of the DNSDefaultID rule.
const KindDNSDefault = "dns_default"

// MaxHostLen is the longest host name accepted (RFC 1035, without the
// trailing dot).
const MaxHostLen = 253

// DefaultDNSGrace is how long a learned address outlives its TTL, in
// seconds, when dns.grace is left out.
const DefaultDNSGrace = 10

// MaxDNSGrace bounds dns.grace (seconds).
const MaxDNSGrace = 3600

// Refuse is how a name that is not allowed is answered.
type Refuse uint8

const (
	RefuseNXDomain Refuse = iota // NXDOMAIN: the name does not exist
	RefuseRefused                // REFUSED
)

// String returns "nxdomain" or "refused".
func (r Refuse) String() string {
	if r == RefuseRefused {
		return "refused"
	}
	return "nxdomain"
}

// DNS is a version 2 policy's dns section (zero without one).
type DNS struct {
	Set      bool
	Upstream []netip.AddrPort // empty: the nameservers of /etc/resolv.conf
	Refuse   Refuse
	Grace    int // seconds; DefaultDNSGrace when left out
	Line     int
}

// HasHosts reports whether the policy has a host entry: then every DNS
// query of the sandbox goes to assay's resolver.
func (p *Policy) HasHosts() bool {
	for _, r := range p.NetAllow {
		if r.Host != "" {
			return true
		}
	}
	return false
}

// HostRules returns the host entries that allow name (in policy order;
// the caller normalises name with NormalizeName).
func (p *Policy) HostRules(name string) []NetRule {
	var out []NetRule
	for _, r := range p.NetAllow {
		if r.Host != "" && HostMatch(r.Host, name) {
			out = append(out, r)
		}
	}
	return out
}

// DNSDefaultRule is the rule reported for a name no host entry allows.
func DNSDefaultRule() Rule { return dnsDefaultRule() }

func dnsDefaultRule() Rule {
	return Rule{ID: DNSDefaultID, Kind: KindDNSDefault, Detail: "no network.allow host entry matches the name"}
}

// NormalizeName lowercases a DNS name and drops its trailing dot.
func NormalizeName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// HostMatch reports whether a host entry (as CheckHost returns it) covers
// name (normalised): an exact name equals it; "*.suffix" covers every name
// ending in ".suffix", at any depth, but not suffix itself.
func HostMatch(pattern, name string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(name) > len(rest) && strings.HasSuffix(name, rest)
	}
	return pattern == name
}

// CheckHost validates a host entry and returns it normalised (lower case,
// no trailing dot), or a message saying what is wrong.
func CheckHost(s string) (string, string) {
	h := NormalizeName(s)
	name := h
	wild := false
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name, wild = rest, true
	}
	switch {
	case h == "":
		return "", "empty host name"
	case h == "*":
		return "", `host "*" would allow every name: use network.default: allow, or "*.example.com"`
	case len(h) > MaxHostLen:
		return "", "host name longer than " + strconv.Itoa(MaxHostLen) + " bytes"
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", "host " + quote(s) + " is an address: use cidr"
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", "host " + quote(s) + " has an empty label"
		}
		if len(label) > 63 {
			return "", "host " + quote(s) + " has a label longer than 63 bytes"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if c == '*' {
				return "", "host " + quote(s) + ": a wildcard is only allowed as a whole first label (\"*.example.com\")"
			}
			if !ok {
				return "", "host " + quote(s) + ": use letters, digits, '-' and '_' in labels"
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", "host " + quote(s) + ": a label cannot start or end with '-'"
		}
	}
	if wild {
		return "*." + name, ""
	}
	return name, ""
}

func (ps *parser) dnsSection(n *yaml.Node, path string, pol *Policy) *Error {
	pol.DNS = DNS{Set: true, Grace: DefaultDNSGrace, Line: n.Line}
	_, err := ps.walk(n, path, pol,
		section{name: "upstream", parse: listOf((*parser).upstream)},
		section{name: "refuse", parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) *Error {
			i, err := ps.oneOf(n, path, "answer", "nxdomain", "refused")
			pol.DNS.Refuse = [...]Refuse{RefuseNXDomain, RefuseRefused}[i]
			return err
		}},
		section{name: "grace", parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) *Error {
			v, err := ps.intRange(n, path, 0, MaxDNSGrace)
			pol.DNS.Grace = int(v)
			return err
		}})
	return err
}

// upstream parses dns.upstream.
func (ps *parser) upstream(items []*yaml.Node, path string, pol *Policy) *Error {
	seen := map[netip.AddrPort]int{}
	for i, it := range items {
		ip := index(path, i)
		s, err := ps.str(it, ip, "an address with an optional port, such as 127.0.0.53 or [::1]:5353")
		if err != nil {
			return err
		}
		ap, msg := parseUpstream(s)
		if msg != "" {
			return ps.errf(it.Line, ip, "%s", msg)
		}
		if line, dup := seen[ap]; dup {
			return ps.errf(it.Line, ip, "upstream %s already listed at line %d", ap, line)
		}
		seen[ap] = it.Line
		pol.DNS.Upstream = append(pol.DNS.Upstream, ap)
	}
	return nil
}

// parseUpstream parses "ADDR" or "ADDR:PORT" ("[V6]:PORT").
func parseUpstream(s string) (netip.AddrPort, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, "upstream " + quote(s) + ": zones are not supported"
		}
		return netip.AddrPortFrom(a.Unmap(), 53), ""
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, "upstream " + quote(s) + " is not an address with an optional port (127.0.0.53, 127.0.0.53:5353, ::1, [::1]:5353)"
	}
	if ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, "upstream " + quote(s) + ": needs a port above 0 and a specific address without zone"
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ""
}
