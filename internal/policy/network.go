// The network section: deny_ports, allow_cidrs, deny_cidrs (version 1);
// default, allow and deny (version 2).

package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (ps *parser) network(n *yaml.Node, path string, pol *Policy) *Error {
	_, err := ps.walk(n, path, pol,
		section{name: "deny_ports", parse: listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) (err *Error) {
			pol.DenyPorts, err = ps.ports(items, path)
			return err
		})},
		section{name: "allow_cidrs", parse: listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) (err *Error) {
			pol.AllowCIDRs, err = ps.cidrs(items, path)
			return err
		})},
		section{name: "deny_cidrs", parse: listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) (err *Error) {
			pol.DenyCIDRs, err = ps.cidrs(items, path)
			return err
		})})
	return err
}

func (ps *parser) networkV2(n *yaml.Node, path string, pol *Policy) *Error {
	entries := func(allow bool) func(*parser, *yaml.Node, string, *Policy) *Error {
		return listOf(func(ps *parser, items []*yaml.Node, path string, pol *Policy) *Error {
			rules, err := ps.netEntries(items, path, allow)
			if allow {
				pol.NetAllow = rules
			} else {
				pol.NetDeny = rules
			}
			return err
		})
	}
	fs, err := ps.walk(n, path, pol,
		section{name: "default", required: defaultRequired, parse: func(ps *parser, n *yaml.Node, path string, pol *Policy) (err *Error) {
			pol.NetDefault, err = ps.defaultField(n, path)
			return err
		}},
		section{name: "allow", parse: entries(true)},
		section{name: "deny", parse: entries(false)})
	if err != nil {
		return err
	}
	pol.NetworkSet = true
	if pol.NetDefault == DefaultAllow && len(pol.NetAllow) > 0 {
		allowField := fieldNamed(fs, "allow")
		return ps.errf(allowField.val.Line, allowField.path, "allow entries have no effect with default: allow (use default: deny to allow only these destinations)")
	}
	allow := make(map[string]int, len(pol.NetAllow))
	for _, r := range pol.NetAllow {
		allow[r.key()] = r.Line
	}
	for i, r := range pol.NetDeny {
		if line, both := allow[r.key()]; both {
			return ps.errf(r.Line, index(join(path, "deny"), i), "%s is in both allow (line %d) and deny", r.Detail(), line)
		}
	}
	return nil
}

func (ps *parser) netEntries(items []*yaml.Node, path string, allow bool) ([]NetRule, *Error) {
	out := make([]NetRule, 0, len(items))
	seen := map[string]int{}
	for i, it := range items {
		ip := index(path, i)
		r := NetRule{Line: it.Line, AnyAddr: true}
		switch it.Kind {
		case yaml.ScalarNode:
			pfx, err := ps.cidr(it, ip, "a CIDR string or a mapping {cidr: ..., ports: [...], proto: ..., id: ...}")
			if err != nil {
				return nil, err
			}
			r.AnyAddr, r.Prefix = false, pfx
		case yaml.MappingNode:
			known := []string{"cidr", "port", "ports", "proto", "id"}
			if allow {
				known = []string{"cidr", "host", "port", "ports", "proto", "id"}
			}
			fs, err := ps.fields(it, ip, known...)
			if err != nil {
				return nil, err
			}
			var cidrPath string
			var idn *yaml.Node
			var idp, portPath string
			for _, f := range fs {
				switch f.name {
				case "cidr":
					pfx, err := ps.cidr(f.val, f.path, "a CIDR string")
					if err != nil {
						return nil, err
					}
					if r.Host != "" {
						return nil, ps.errf(f.key.Line, f.path, "give either cidr or host, not both")
					}
					r.AnyAddr, r.Prefix, cidrPath = false, pfx, f.path
				case "host":
					s, err := ps.str(f.val, f.path, "a host name such as api.github.com or *.githubusercontent.com")
					if err != nil {
						return nil, err
					}
					h, msg := CheckHost(s)
					if msg != "" {
						return nil, ps.errf(f.val.Line, f.path, "%s", msg)
					}
					if cidrPath != "" {
						return nil, ps.errf(f.key.Line, f.path, "give either cidr or host, not both")
					}
					r.AnyAddr, r.Host = false, h
				case "port", "ports":
					if portPath != "" {
						return nil, ps.errf(f.key.Line, f.path, "give either port or ports, not both (%s is already given)", portPath)
					}
					portPath = f.path
					var nodes []*yaml.Node
					if f.name == "port" {
						nodes = []*yaml.Node{f.val}
					} else {
						if f.val.Kind != yaml.SequenceNode {
							return nil, ps.typeErr(f.val, f.path, "a list of ports")
						}
						if len(f.val.Content) == 0 {
							return nil, ps.errf(f.val.Line, f.path, "empty list: leave ports out to match every port")
						}
						nodes = f.val.Content
					}
					got := map[uint16]int{}
					for j, pn := range nodes {
						pp := f.path
						if f.name == "ports" {
							pp = index(f.path, j)
						}
						v, err := ps.intRange(pn, pp, 1, 65535)
						if err != nil {
							return nil, err
						}
						if line, dup := got[uint16(v)]; dup {
							return nil, ps.errf(pn.Line, pp, "port %d already listed at line %d", v, line)
						}
						got[uint16(v)] = pn.Line
						r.Ports = append(r.Ports, uint16(v))
					}
					slices.Sort(r.Ports)
				case "proto":
					s, err := ps.str(f.val, f.path, "tcp or udp")
					if err != nil {
						return nil, err
					}
					switch s {
					case "tcp":
						r.Proto = ProtoTCP
					case "udp":
						r.Proto = ProtoUDP
					default:
						return nil, ps.errf(f.val.Line, f.path, "unknown protocol %s; use tcp or udp (leave proto out for both)", quote(s))
					}
				case "id":
					idn, idp = f.val, f.path
				}
			}
			if r.AnyAddr && r.Ports == nil && r.Proto == ProtoAny {
				return nil, ps.errf(it.Line, ip, "an entry needs cidr, port or ports (an entry matching everything is what default is for)")
			}
			if idn != nil {
				id, err := ps.id(idn, idp)
				if err != nil {
					return nil, err
				}
				r.ID = id
			}
		default:
			return nil, ps.typeErr(it, ip, "a CIDR string or a mapping {cidr: ..., ports: [...], proto: ..., id: ...}")
		}
		k := r.key()
		if line, dup := seen[k]; dup {
			return nil, ps.errf(it.Line, ip, "%s already listed at line %d", r.Detail(), line)
		}
		seen[k] = it.Line
		out = append(out, r)
	}
	return out, nil
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
		pfx, err := ps.cidr(vn, vp, "a CIDR string")
		if err != nil {
			return nil, err
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

// cidr parses a CIDR string node (want: what the error says is expected
// when it is not a string).
func (ps *parser) cidr(n *yaml.Node, path, want string) (netip.Prefix, *Error) {
	s, err := ps.str(n, path, want)
	if err != nil {
		return netip.Prefix{}, err
	}
	pfx, msg := parseCIDR(s)
	if msg != "" {
		return netip.Prefix{}, ps.errf(n.Line, path, "%s", msg)
	}
	return pfx, nil
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
