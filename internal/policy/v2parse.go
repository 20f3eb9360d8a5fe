package policy

// The version 2 parser: the files and network sections and the root (the
// format is described in v2.go).

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

func (ps *parser) defaultField(n *yaml.Node, path string) (Default, *Error) {
	s, err := ps.str(n, path, "deny or allow")
	if err != nil {
		return 0, err
	}
	switch s {
	case "deny":
		return DefaultDeny, nil
	case "allow":
		return DefaultAllow, nil
	}
	return 0, ps.errf(n.Line, path, "unknown default %s; use deny or allow", quote(s))
}

func (ps *parser) filesV2(n *yaml.Node, path string, pol *Policy) *Error {
	if isNull(n) {
		return ps.errf(n.Line, join(path, "default"), "required field missing (add \"default: deny\" or \"default: allow\")")
	}
	fs, err := ps.fields(n, path, "default", "baseline", "allow", "deny")
	if err != nil {
		return err
	}
	var def, base *field
	for i := range fs {
		switch fs[i].name {
		case "default":
			def = &fs[i]
		case "baseline":
			base = &fs[i]
		}
	}
	if def == nil {
		return ps.errf(n.Line, join(path, "default"), "required field missing (add \"default: deny\" or \"default: allow\")")
	}
	pol.FilesSet = true
	seen := map[string]int{}
	for _, f := range fs {
		switch f.name {
		case "default":
			d, err := ps.defaultField(f.val, f.path)
			if err != nil {
				return err
			}
			pol.FileDefault = d
		case "baseline":
			s, err := ps.str(f.val, f.path, "runtime or none")
			if err != nil {
				return err
			}
			switch s {
			case "runtime":
				pol.Baseline = BaselineRuntime
			case "none":
				pol.Baseline = BaselineNone
			default:
				return ps.errf(f.val.Line, f.path, "unknown baseline %s; use runtime or none", quote(s))
			}
		case "allow":
			items, err := ps.list(f.val, f.path)
			if err != nil {
				return err
			}
			if pol.FileAllow, err = ps.pathsV2(items, f.path, true, seen); err != nil {
				return err
			}
		case "deny":
			items, err := ps.list(f.val, f.path)
			if err != nil {
				return err
			}
			if pol.FileDeny, err = ps.pathsV2(items, f.path, false, seen); err != nil {
				return err
			}
		}
	}
	if base == nil && pol.FileDefault == DefaultDeny {
		pol.Baseline = BaselineRuntime
	}
	if base != nil && pol.Baseline == BaselineRuntime && pol.FileDefault == DefaultAllow {
		return ps.errf(base.val.Line, base.path, "the runtime baseline only applies with default: deny (with default: allow everything it lists is allowed anyway)")
	}
	return nil
}

// pathsV2 parses files.allow (allow true) or files.deny entries. seen holds
// the paths of both lists: one rule per path.
func (ps *parser) pathsV2(items []*yaml.Node, path string, allow bool, seen map[string]int) ([]FileRule, *Error) {
	out := make([]FileRule, 0, len(items))
	for i, it := range items {
		ip := index(path, i)
		var vn, an, idn *yaml.Node
		vp, ap, idp := ip, "", ""
		switch it.Kind {
		case yaml.ScalarNode:
			vn = it
		case yaml.MappingNode:
			known := []string{"path", "id"}
			if allow {
				known = []string{"path", "access", "id"}
			}
			fs, err := ps.fields(it, ip, known...)
			if err != nil {
				return nil, err
			}
			for _, f := range fs {
				switch f.name {
				case "path":
					vn, vp = f.val, f.path
				case "access":
					an, ap = f.val, f.path
				case "id":
					idn, idp = f.val, f.path
				}
			}
			if vn == nil {
				return nil, ps.errf(it.Line, join(ip, "path"), "required field missing")
			}
		default:
			want := "a path string or a mapping {path: ..., id: ...}"
			if allow {
				want = "a path string or a mapping {path: ..., access: ..., id: ...}"
			}
			return nil, ps.typeErr(it, ip, want)
		}
		s, err := ps.str(vn, vp, "a path string")
		if err != nil {
			return nil, err
		}
		p, dir, perr := CheckPath(s)
		if perr != nil {
			return nil, ps.errf(vn.Line, vp, "%s", perr)
		}
		if line, dup := seen[p]; dup {
			return nil, ps.errf(vn.Line, vp, "path %s already has a rule at line %d (one rule per path)", p, line)
		}
		seen[p] = vn.Line
		acc := Access(0)
		if allow {
			acc = AccessRead
			if an != nil {
				as, err := ps.str(an, ap, "r, w, x or a combination such as rw or rx")
				if err != nil {
					return nil, err
				}
				a, ok := ParseAccess(as)
				if !ok {
					return nil, ps.errf(an.Line, ap, "access %s: use a combination of r, w and x (each at most once), such as r, rw, rx or rwx", quote(as))
				}
				acc = a
			}
		}
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, FileRule{ID: id, Path: p, WantDir: dir, Access: acc, Line: it.Line})
	}
	return out, nil
}

func (ps *parser) networkV2(n *yaml.Node, path string, pol *Policy) *Error {
	if isNull(n) {
		return ps.errf(n.Line, join(path, "default"), "required field missing (add \"default: deny\" or \"default: allow\")")
	}
	fs, err := ps.fields(n, path, "default", "allow", "deny")
	if err != nil {
		return err
	}
	var def *field
	var allowField *field
	for i := range fs {
		switch fs[i].name {
		case "default":
			def = &fs[i]
		case "allow":
			allowField = &fs[i]
		}
	}
	if def == nil {
		return ps.errf(n.Line, join(path, "default"), "required field missing (add \"default: deny\" or \"default: allow\")")
	}
	pol.NetworkSet = true
	for _, f := range fs {
		switch f.name {
		case "default":
			d, err := ps.defaultField(f.val, f.path)
			if err != nil {
				return err
			}
			pol.NetDefault = d
		case "allow", "deny":
			items, err := ps.list(f.val, f.path)
			if err != nil {
				return err
			}
			rules, err := ps.netEntries(items, f.path, f.name == "allow")
			if err != nil {
				return err
			}
			if f.name == "allow" {
				pol.NetAllow = rules
			} else {
				pol.NetDeny = rules
			}
		}
	}
	if pol.NetDefault == DefaultAllow && len(pol.NetAllow) > 0 {
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
			s, err := ps.str(it, ip, "a CIDR string or a mapping {cidr: ..., ports: [...], proto: ..., id: ...}")
			if err != nil {
				return nil, err
			}
			pfx, msg := parseCIDR(s)
			if msg != "" {
				return nil, ps.errf(it.Line, ip, "%s", msg)
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
					s, err := ps.str(f.val, f.path, "a CIDR string")
					if err != nil {
						return nil, err
					}
					pfx, msg := parseCIDR(s)
					if msg != "" {
						return nil, ps.errf(f.val.Line, f.path, "%s", msg)
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

// rootV2 parses the fields of a version 2 policy.
func (ps *parser) rootV2(n *yaml.Node, pol *Policy) *Error {
	pol.Version = 2
	fs, err := ps.fields(n, "", "version", "mode", "network", "files", "limits", "mcp", "dns")
	if err != nil {
		return err
	}
	var dnsField *field
	for _, f := range fs {
		switch f.name {
		case "mode":
			if err := ps.mode(f, pol); err != nil {
				return err
			}
		case "limits":
			if err := ps.limits(f.val, f.path, pol); err != nil {
				return err
			}
		case "dns":
			if err := ps.dnsSection(f.val, f.path, pol); err != nil {
				return err
			}
			dnsField = &f
		case "network":
			if err := ps.networkV2(f.val, f.path, pol); err != nil {
				return err
			}
		case "files":
			if err := ps.filesV2(f.val, f.path, pol); err != nil {
				return err
			}
		case "mcp":
			if err := ps.mcpSection(f.val, f.path, pol); err != nil {
				return err
			}
		}
	}
	if dnsField != nil && !pol.HasHosts() {
		return ps.errf(dnsField.key.Line, dnsField.path, "a dns section needs at least one network.allow entry with host: (without one no name is allowed and the section has no effect)")
	}
	if dnsField == nil && pol.HasHosts() {
		pol.DNS.Grace = DefaultDNSGrace
	}
	return nil
}
