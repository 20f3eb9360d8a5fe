// The network section: deny_ports, allow_cidrs, deny_cidrs.

package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (ps *parser) network(n *yaml.Node, path string, pol *Policy) *Error {
	if isNull(n) {
		return nil
	}
	fs, err := ps.fields(n, path, "deny_ports", "allow_cidrs", "deny_cidrs")
	if err != nil {
		return err
	}
	for _, f := range fs {
		items, err := ps.list(f.val, f.path)
		if err != nil {
			return err
		}
		switch f.name {
		case "deny_ports":
			pol.DenyPorts, err = ps.ports(items, f.path)
		case "allow_cidrs":
			pol.AllowCIDRs, err = ps.cidrs(items, f.path)
		case "deny_cidrs":
			pol.DenyCIDRs, err = ps.cidrs(items, f.path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (ps *parser) ports(items []*yaml.Node, path string) ([]PortRule, *Error) {
	out := make([]PortRule, 0, len(items))
	seen := map[uint16]int{}
	for i, it := range items {
		ip := index(path, i)
		vn, vp, idn, idp, err := ps.entry(it, ip, "port", "a port number")
		if err != nil {
			return nil, err
		}
		v, err := ps.intRange(vn, vp, 1, 65535)
		if err != nil {
			return nil, err
		}
		port := uint16(v)
		if line, dup := seen[port]; dup {
			return nil, ps.errf(vn.Line, vp, "port %d already listed at line %d", port, line)
		}
		seen[port] = vn.Line
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, PortRule{ID: id, Port: port, Line: it.Line})
	}
	return out, nil
}

func (ps *parser) cidrs(items []*yaml.Node, path string) ([]CIDRRule, *Error) {
	out := make([]CIDRRule, 0, len(items))
	seen := map[netip.Prefix]int{}
	for i, it := range items {
		ip := index(path, i)
		vn, vp, idn, idp, err := ps.entry(it, ip, "cidr", "a CIDR string")
		if err != nil {
			return nil, err
		}
		s, err := ps.str(vn, vp, "a CIDR string")
		if err != nil {
			return nil, err
		}
		pfx, msg := parseCIDR(s)
		if msg != "" {
			return nil, ps.errf(vn.Line, vp, "%s", msg)
		}
		if line, dup := seen[pfx]; dup {
			return nil, ps.errf(vn.Line, vp, "%s already listed at line %d", pfx, line)
		}
		seen[pfx] = vn.Line
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, CIDRRule{ID: id, Prefix: pfx, Line: it.Line})
	}
	return out, nil
}

// parseCIDR parses a prefix or bare address; see the package doc. On error
// it returns a message.
func parseCIDR(s string) (netip.Prefix, string) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Sprintf("%s: IPv6 zones (%%eth0) are not allowed", quote(s))
	}
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%s is not a valid CIDR prefix", quote(s))
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Sprintf("%s has host bits set; did you mean %s?", s, m)
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%s is not a valid CIDR prefix or address", quote(s))
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), ""
}

// crossCheck runs the checks that span lists.
func (ps *parser) crossCheck(pol *Policy) *Error {
	if len(pol.AllowCIDRs) == 0 {
		return nil
	}
	allow := make(map[netip.Prefix]int, len(pol.AllowCIDRs))
	for _, r := range pol.AllowCIDRs {
		allow[r.Prefix] = r.Line
	}
	for i, r := range pol.DenyCIDRs {
		if line, both := allow[r.Prefix]; both {
			return ps.errf(r.Line, index("network.deny_cidrs", i), "%s is in both allow_cidrs (line %d) and deny_cidrs", r.Prefix, line)
		}
	}
	return nil
}
