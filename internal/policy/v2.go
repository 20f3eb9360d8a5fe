package policy

// # File format (version 2)
//
//	version: 2
//	mode: enforce                       # enforce | audit
//	files:
//	  default: deny                     # required: deny | allow
//	  baseline: runtime                 # runtime (the default with default: deny) | none
//	  allow:
//	    - {path: /home/agent/projects/, access: rw, id: 10}
//	    - {path: /opt/node/, access: rx}
//	    - /srv/data/                    # a bare path means access: r
//	  deny:
//	    - {path: /home/agent/projects/.env, id: 11}
//	network:
//	  default: deny                     # required: deny | allow
//	  allow:
//	    - {cidr: 10.0.0.0/8, ports: [5432], proto: tcp, id: 20}
//	    - "2001:db8::/32"               # a bare string is a cidr: all ports, both protocols
//	  deny:
//	    - {port: 22, id: 21}
//	    - {cidr: 169.254.169.254/32}
//
// access is a non-empty combination of r, w and x, each at most once, in
// any order. A path may be listed once across files.allow and files.deny
// (with or without the trailing slash). The nearest rule on the way from a
// file up to / decides (see [Policy.FileAccess]); default decides when no
// rule is found. The runtime baseline ([RuntimeBaseline]) only exists under
// files.default: deny; writing baseline: runtime with default: allow is an
// error. A policy rule on the same path as a baseline rule replaces it.
//
// A network entry is a string (a cidr) or a mapping with at least one of
// cidr, port or ports (a non-empty list), and proto (tcp or udp); port and
// ports exclude each other. An entry matches a destination inside its
// prefix (every address of both families when cidr is left out), on one of
// its ports (every port when left out), over its protocol (TCP and UDP and
// anything else when left out). Deny entries win over allow entries; when
// neither matches, default decides, under the reserved id
// [NotInAllowCIDRsID] ("network_default"). Allow entries with
// default: allow would have no effect and are an error. The same entry may
// be listed only once, and never in both lists.
//
// Ids without an explicit value are assigned as in version 1, visiting
// network.deny, network.allow, files.deny, files.allow in that order.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Reserved ids of version 2's implicit rules.
const (
	// FilesDefaultID is the id reported when no file rule matches and
	// files.default is deny.
	FilesDefaultID uint32 = 1000002
	// BaselineFirstID is the id of the first runtime-baseline rule; the
	// others follow in the order RuntimeBaseline lists them.
	BaselineFirstID uint32 = 1001000
)

// Rule kinds of version 2.
const (
	KindAllowPath      = "allow_path"
	KindBaselinePath   = "baseline_path"
	KindFilesDefault   = "files_default"
	KindNetAllow       = "net_allow"
	KindNetDeny        = "net_deny"
	KindNetworkDefault = "network_default"
)

// Access is a set of file access rights.
type Access uint8

const (
	AccessRead  Access = 1 << iota // r: read files, list directories
	AccessWrite                    // w: write, create, delete, rename, truncate, change attributes
	AccessExec                     // x: execute, map for execution
	AccessAll   = AccessRead | AccessWrite | AccessExec
)

// String returns the rights as "rwx" letters ("-" for none).
func (a Access) String() string {
	var b strings.Builder
	if a&AccessRead != 0 {
		b.WriteByte('r')
	}
	if a&AccessWrite != 0 {
		b.WriteByte('w')
	}
	if a&AccessExec != 0 {
		b.WriteByte('x')
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// ParseAccess parses a combination of r, w and x.
func ParseAccess(s string) (Access, bool) {
	if s == "" || len(s) > 3 {
		return 0, false
	}
	var a Access
	for _, c := range []byte(s) {
		var bit Access
		switch c {
		case 'r':
			bit = AccessRead
		case 'w':
			bit = AccessWrite
		case 'x':
			bit = AccessExec
		default:
			return 0, false
		}
		if a&bit != 0 {
			return 0, false
		}
		a |= bit
	}
	return a, true
}

// Default is the verdict of a section when no rule matches.
type Default int

const (
	DefaultAllow Default = iota
	DefaultDeny
)

// String returns "allow" or "deny".
func (d Default) String() string {
	if d == DefaultDeny {
		return "deny"
	}
	return "allow"
}

// Baseline names a built-in set of file rules.
type Baseline int

const (
	BaselineNone Baseline = iota
	BaselineRuntime
)

// String returns "none" or "runtime".
func (b Baseline) String() string {
	if b == BaselineRuntime {
		return "runtime"
	}
	return "none"
}

// Proto is a network entry's protocol; ProtoAny matches every protocol.
type Proto uint8

const (
	ProtoAny Proto = 0
	ProtoTCP Proto = 6  // IPPROTO_TCP
	ProtoUDP Proto = 17 // IPPROTO_UDP
)

// String returns "tcp", "udp" or "any".
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return "any"
}

// NetRule is one version 2 network.allow or network.deny entry. A zero
// Prefix (AnyAddr false) means every address of both families.
type NetRule struct {
	ID      uint32
	AnyAddr bool         // no cidr given
	Prefix  netip.Prefix // masked; IPv4 prefixes are Is4
	Ports   []uint16     // sorted, unique; nil: every port
	Proto   Proto
	Line    int
}

// Matches reports whether the entry covers a destination. addr must be
// unmapped (an IPv4-mapped IPv6 address is judged as IPv4).
func (r NetRule) Matches(addr netip.Addr, port uint16, proto Proto) bool {
	if !r.AnyAddr && !r.Prefix.Contains(addr) {
		return false
	}
	if r.Ports != nil && !slices.Contains(r.Ports, port) {
		return false
	}
	return r.Proto == ProtoAny || r.Proto == proto
}

// Detail describes the entry as in rule listings, e.g.
// "10.0.0.0/8 port 5432 tcp".
func (r NetRule) Detail() string {
	var parts []string
	if r.AnyAddr {
		parts = append(parts, "any address")
	} else {
		parts = append(parts, r.Prefix.String())
	}
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = strconv.Itoa(int(p))
		}
		w := "port "
		if len(ps) > 1 {
			w = "ports "
		}
		parts = append(parts, w+strings.Join(ps, ","))
	}
	if r.Proto != ProtoAny {
		parts = append(parts, r.Proto.String())
	}
	return strings.Join(parts, " ")
}

func (r NetRule) key() string {
	ps := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		ps[i] = strconv.Itoa(int(p))
	}
	a := "*"
	if !r.AnyAddr {
		a = r.Prefix.String()
	}
	return a + "|" + strings.Join(ps, ",") + "|" + r.Proto.String()
}

// NetDecision is the outcome of NetVerdict.
type NetDecision struct {
	Allowed bool
	Rule    Rule // the deciding rule (the network_default rule when none matched)
}

// NetVerdict judges a destination against a version 2 network section, as
// the kernel does. It must not be called on version 1 policies.
func (p *Policy) NetVerdict(addr netip.Addr, port uint16, proto Proto) NetDecision {
	addr = addr.Unmap()
	for _, r := range p.NetDeny {
		if r.Matches(addr, port, proto) {
			return NetDecision{Allowed: false, Rule: netRule(r, KindNetDeny)}
		}
	}
	for _, r := range p.NetAllow {
		if r.Matches(addr, port, proto) {
			return NetDecision{Allowed: true, Rule: netRule(r, KindNetAllow)}
		}
	}
	return NetDecision{Allowed: p.NetDefault == DefaultAllow, Rule: p.netDefaultRule()}
}

func netRule(r NetRule, kind string) Rule {
	return Rule{ID: r.ID, Kind: kind, Detail: r.Detail(), Line: r.Line}
}

func (p *Policy) netDefaultRule() Rule {
	return Rule{ID: NotInAllowCIDRsID, Kind: KindNetworkDefault, Detail: "no network entry matched (network.default: " + p.NetDefault.String() + ")"}
}

func (p *Policy) filesDefaultRule() Rule {
	return Rule{ID: FilesDefaultID, Kind: KindFilesDefault, Detail: "no file rule matched (files.default: " + p.FileDefault.String() + ")"}
}

// FileRules returns every file rule that applies: the policy's own (deny
// rules with Access 0) and, with baseline: runtime, the runtime baseline
// rules whose paths no policy rule names. Version 1 policies have deny
// rules only.
func (p *Policy) FileRules() []FileRule {
	out := make([]FileRule, 0, len(p.FileDeny)+len(p.FileAllow))
	out = append(out, p.FileDeny...)
	out = append(out, p.FileAllow...)
	if p.Baseline == BaselineRuntime {
		own := map[string]bool{}
		for _, r := range out {
			own[r.Path] = true
		}
		for _, b := range RuntimeBaseline() {
			if !own[b.Path] {
				out = append(out, b)
			}
		}
	}
	return out
}

// FileDecision is the outcome of FileAccess.
type FileDecision struct {
	Access Access // what the deciding rule allows
	Rule   Rule   // the deciding rule (the files_default rule when none matched)
}

// FileAccess returns what the policy allows on a path (absolute and clean,
// as the kernel sees it: symlinks already resolved) and the rule that
// decides: the nearest rule on the way from the path up to /. A rule
// without a trailing slash (WantDir false) applies to its path only when it
// is not a directory, which the caller knows: here it is matched on its
// path and, like a directory rule, on everything below it.
func (p *Policy) FileAccess(path string) FileDecision {
	return fileAccess(p.FileRules(), p, path)
}

func fileAccess(rules []FileRule, p *Policy, path string) FileDecision {
	byPath := make(map[string]FileRule, len(rules))
	for _, r := range rules {
		byPath[r.Path] = r
	}
	for cur := path; ; {
		if r, ok := byPath[cur]; ok {
			return FileDecision{Access: r.Access, Rule: p.fileRuleView(r)}
		}
		if cur == "/" {
			break
		}
		i := strings.LastIndexByte(cur, '/')
		if i == 0 {
			cur = "/"
		} else {
			cur = cur[:i]
		}
	}
	a := Access(0)
	if p.FileDefault == DefaultAllow {
		a = AccessAll
	}
	return FileDecision{Access: a, Rule: p.filesDefaultRule()}
}

func (p *Policy) fileRuleView(r FileRule) Rule {
	v := fileRule(r)
	switch {
	case r.ID >= BaselineFirstID:
		v.Kind = KindBaselinePath
		v.Detail += " (" + r.Access.String() + ")"
	case r.Access != 0:
		v.Kind = KindAllowPath
		v.Detail += " (" + r.Access.String() + ")"
	}
	return v
}

// v2Rules appends the version 2 rules (and implicit rules) to rs.
func (p *Policy) v2Rules(rs []Rule) []Rule {
	for _, r := range p.NetDeny {
		rs = append(rs, netRule(r, KindNetDeny))
	}
	for _, r := range p.NetAllow {
		rs = append(rs, netRule(r, KindNetAllow))
	}
	for _, r := range p.FileAllow {
		rs = append(rs, p.fileRuleView(r))
	}
	if p.NetworkSet && p.NetDefault == DefaultDeny {
		rs = append(rs, p.netDefaultRule())
	}
	if p.FilesSet && p.FileDefault == DefaultDeny {
		rs = append(rs, p.filesDefaultRule())
	}
	return rs
}

// v2RuleByID finds a version 2 rule (baseline rules included).
func (p *Policy) v2RuleByID(id uint32) (Rule, bool) {
	switch id {
	case NotInAllowCIDRsID:
		return p.netDefaultRule(), p.NetworkSet && p.NetDefault == DefaultDeny
	case FilesDefaultID:
		return p.filesDefaultRule(), p.FilesSet && p.FileDefault == DefaultDeny
	}
	for _, r := range p.NetDeny {
		if r.ID == id {
			return netRule(r, KindNetDeny), true
		}
	}
	for _, r := range p.NetAllow {
		if r.ID == id {
			return netRule(r, KindNetAllow), true
		}
	}
	for _, r := range p.FileRules() {
		if r.ID == id {
			return p.fileRuleView(r), true
		}
	}
	return Rule{}, false
}

// ---- version 2 parser ----

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
			rules, err := ps.netEntries(items, f.path)
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

func (ps *parser) netEntries(items []*yaml.Node, path string) ([]NetRule, *Error) {
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
			fs, err := ps.fields(it, ip, "cidr", "port", "ports", "proto", "id")
			if err != nil {
				return nil, err
			}
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
					r.AnyAddr, r.Prefix = false, pfx
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
	fs, err := ps.fields(n, "", "version", "mode", "network", "files", "limits", "mcp")
	if err != nil {
		return err
	}
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
	return nil
}

// ruleCount is the number of rules Rules returns.
func (p *Policy) v2Summary() string {
	files := "files: none"
	if p.FilesSet {
		files = fmt.Sprintf("files: default %s, baseline %s, %d allow, %d deny", p.FileDefault, p.Baseline, len(p.FileAllow), len(p.FileDeny))
	}
	net := "network: none"
	if p.NetworkSet {
		net = fmt.Sprintf("network: default %s, %d allow, %d deny", p.NetDefault, len(p.NetAllow), len(p.NetDeny))
	}
	tools := ""
	if p.HasToolRules() {
		tools = fmt.Sprintf("; %d tool rules", len(p.ToolDeny)+len(p.ToolAllow))
	}
	return fmt.Sprintf("version 2, %s; %s%s; mode %s", files, net, tools, p.Mode)
}
