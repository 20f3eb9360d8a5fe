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
	Host    string       // a host entry (dns.go): an exact name or "*.suffix"; no prefix then
	AnyAddr bool         // no cidr given (and no host)
	Prefix  netip.Prefix // masked; IPv4 prefixes are Is4
	Ports   []uint16     // sorted, unique; nil: every port
	Proto   Proto
	Line    int
}

// Matches reports whether the entry covers a destination. addr must be
// unmapped (an IPv4-mapped IPv6 address is judged as IPv4).
func (r NetRule) Matches(addr netip.Addr, port uint16, proto Proto) bool {
	if r.Host != "" {
		return false // host entries allow the addresses their names resolve to (dns.go)
	}
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
	if r.Host != "" {
		parts = append(parts, "host "+r.Host)
	} else if r.AnyAddr {
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
	if r.Host != "" {
		a = "host " + r.Host
	} else if !r.AnyAddr {
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
	if p.HasHosts() {
		rs = append(rs, dnsDefaultRule())
	}
	if p.FilesSet && p.FileDefault == DefaultDeny {
		rs = append(rs, p.filesDefaultRule())
	}
	return rs
}

// v2Summary describes a version 2 policy in one line (policy check).
func (p *Policy) v2Summary() string {
	files := "files: none"
	if p.FilesSet {
		files = fmt.Sprintf("files: default %s, baseline %s, %d allow, %d deny", p.FileDefault, p.Baseline, len(p.FileAllow), len(p.FileDeny))
	}
	net := "network: none"
	if p.NetworkSet {
		net = fmt.Sprintf("network: default %s, %d allow, %d deny", p.NetDefault, len(p.NetAllow), len(p.NetDeny))
		if p.HasHosts() {
			net += ", names through assay's resolver"
		}
	}
	tools := ""
	if p.HasToolRules() {
		tools = fmt.Sprintf("; %d tool rules", len(p.ToolDeny)+len(p.ToolAllow))
	}
	return fmt.Sprintf("version 2, %s; %s%s; mode %s", files, net, tools, p.Mode)
}
