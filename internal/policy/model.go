package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

const (
	// MaxPolicyBytes is the largest policy file Load and Parse accept.
	MaxPolicyBytes = 16 << 20 // room for ~200k rules; bounds the YAML parser's memory
	// MaxUserID is the largest id a policy may give a rule.
	MaxUserID uint32 = 999999
	// NotInAllowCIDRsID is the reserved id of the implicit rule that blocks
	// destinations outside allow_cidrs (when allow_cidrs is non-empty).
	NotInAllowCIDRsID uint32 = 1000000
	// MaxPathLen is the longest path (in bytes, as written) files.deny accepts.
	MaxPathLen = 4096
	// MaxElements bounds the YAML elements a policy may hold: an upper
	// bound of the nodes the YAML parser would build, counted on the raw
	// bytes first (countElements). The parser builds every node before any
	// other check runs, at ~200 bytes each, so without this bound a 16 MiB
	// policy of tiny elements ("[1,1,1,...") costs ~1.6 GB and seconds;
	// with it, at most ~1.7M nodes (~340 MB). A rule counts 3 ("- 22") to
	// 15 ("- {cidr: 10.0.0.0/8, id: 7}") elements: room for 160k rules in
	// the longest form, 800k in the shortest.
	MaxElements = 2_500_000
	// MaxDepth is the deepest nesting of YAML mappings and lists accepted.
	// A valid policy nests at most 4 deep (root, network, deny_ports, entry).
	MaxDepth = 16
)

// Rule kinds returned in [Rule.Kind].
const (
	KindDenyPort        = "deny_port"
	KindDenyCIDR        = "deny_cidr"
	KindAllowCIDR       = "allow_cidr"
	KindDenyPath        = "deny_path"
	KindNotInAllowCIDRs = "not_in_allow_cidrs"
)

// Error is a policy error. Every error returned by Parse, and every content
// error returned by Load, is an *Error.
type Error struct {
	File  string // file name as given to Parse / Load
	Line  int    // 1-based line, 0 if unknown
	Field string // dotted field path such as network.deny_ports[2].port; "" if none
	Msg   string
}

// Error formats the error as FILE:LINE: FIELD: MSG. The ":LINE" part is left
// out when Line is 0, "FIELD: " when Field is empty, and "FILE:" when File is
// empty.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Mode says whether matching operations are blocked or only reported.
type Mode int

const (
	ModeEnforce Mode = iota // block and report
	ModeAudit               // report only
)

// String returns "enforce" or "audit".
func (m Mode) String() string {
	switch m {
	case ModeEnforce:
		return "enforce"
	case ModeAudit:
		return "audit"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// EffectiveMode is the mode a policy runs in: audit when the policy says so
// or when the operator asked for audit mode (--audit) over it; a nil policy
// follows the flag alone. It is the one place that derives it.
func EffectiveMode(p *Policy, auditFlag bool) Mode {
	if auditFlag || (p != nil && p.Mode == ModeAudit) {
		return ModeAudit
	}
	return ModeEnforce
}

// PortRule blocks connections to a destination port.
type PortRule struct {
	ID   uint32
	Port uint16
	Line int
}

// CIDRRule is one allow_cidrs or deny_cidrs entry. Prefix is always masked
// (Prefix == Prefix.Masked()) and IPv4 prefixes are Is4 (never 4-in-6).
type CIDRRule struct {
	ID     uint32
	Prefix netip.Prefix
	Line   int
}

// FileRule is one files.deny entry. Path is absolute and clean, without a
// trailing slash except for "/" itself. WantDir is true when the policy wrote
// a trailing slash: the rule covers the directory's subtree and the resolver
// must check that the path is a directory.
type FileRule struct {
	ID      uint32
	Path    string
	WantDir bool
	Access  Access // version 2: what an allow rule grants; 0 for deny rules
	Line    int
}

// Policy is a parsed and validated policy.
type Policy struct {
	File       string
	Version    int
	Mode       Mode
	DenyPorts  []PortRule
	AllowCIDRs []CIDRRule
	DenyCIDRs  []CIDRRule
	FileDeny   []FileRule
	Digest     string // hex sha256 of the raw file bytes
	Limits     Limits // resource limits for `assay run` (limits.go)

	// Version 2 (see v2.go). Version 1 policies leave these zero:
	// FileDefault allow, Baseline none, no allow rules.
	FilesSet    bool // a files section with a default is present
	FileDefault Default
	Baseline    Baseline
	FileAllow   []FileRule
	NetworkSet  bool // a network section with a default is present
	NetDefault  Default
	NetAllow    []NetRule
	NetDeny     []NetRule
	DNS         DNS // the dns section (dns.go)

	// ToolDeny and ToolAllow are mcp.tools.deny and mcp.tools.allow (one
	// at most); ToolAllowList is true when allow was given, even empty
	// (then every tool is refused).
	ToolDeny      []ToolRule
	ToolAllow     []ToolRule
	ToolAllowList bool
}

// Rule is a uniform view of one rule, for reporting.
type Rule struct {
	ID     uint32
	Kind   string // one of the Kind* constants
	Detail string // port number, prefix or path (a directory path ends in "/")
	Line   int    // 0 for the implicit not_in_allow_cidrs rule
}

// HasFileRules reports whether the policy has any files.deny rule.
func (p *Policy) HasFileRules() bool {
	return len(p.FileDeny) > 0 || len(p.FileAllow) > 0 || (p.FilesSet && p.FileDefault == DefaultDeny)
}

// Rules returns every rule of the policy sorted by id, including the
// implicit not_in_allow_cidrs rule when AllowCIDRs is non-empty.
func (p *Policy) Rules() []Rule {
	n := len(p.DenyPorts) + len(p.AllowCIDRs) + len(p.DenyCIDRs) + len(p.FileDeny)
	rs := make([]Rule, 0, n+1)
	for _, r := range p.DenyPorts {
		rs = append(rs, portRule(r))
	}
	for _, r := range p.DenyCIDRs {
		rs = append(rs, cidrRule(r, KindDenyCIDR))
	}
	for _, r := range p.AllowCIDRs {
		rs = append(rs, cidrRule(r, KindAllowCIDR))
	}
	for _, r := range p.FileDeny {
		rs = append(rs, fileRule(r))
	}
	for _, r := range p.ToolDeny {
		rs = append(rs, toolRule(r, KindDenyTool))
	}
	for _, r := range p.ToolAllow {
		rs = append(rs, toolRule(r, KindAllowTool))
	}
	if len(p.AllowCIDRs) > 0 {
		rs = append(rs, notInAllowRule)
	}
	if p.Version == 2 {
		rs = p.v2Rules(rs)
	}
	if p.ToolAllowList {
		rs = append(rs, notInAllowToolsRule)
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	return rs
}

// Summary describes the policy in one line, e.g.
// "3 port, 2 allow CIDR, 2 deny CIDR, 2 file rules, mode enforce".
func (p *Policy) Summary() string {
	if p.Version == 2 {
		return p.v2Summary()
	}
	files := "file rules"
	if len(p.FileDeny) == 1 {
		files = "file rule"
	}
	tools := ""
	if p.HasToolRules() {
		tools = fmt.Sprintf(", %d tool rules", len(p.ToolDeny)+len(p.ToolAllow))
	}
	return fmt.Sprintf("%d port, %d allow CIDR, %d deny CIDR, %d %s%s, mode %s",
		len(p.DenyPorts), len(p.AllowCIDRs), len(p.DenyCIDRs), len(p.FileDeny), files, tools, p.Mode)
}

var notInAllowRule = Rule{ID: NotInAllowCIDRsID, Kind: KindNotInAllowCIDRs, Detail: "destination outside allow_cidrs"}

func portRule(r PortRule) Rule {
	return Rule{ID: r.ID, Kind: KindDenyPort, Detail: strconv.Itoa(int(r.Port)), Line: r.Line}
}

func cidrRule(r CIDRRule, kind string) Rule {
	return Rule{ID: r.ID, Kind: kind, Detail: r.Prefix.String(), Line: r.Line}
}

func fileRule(r FileRule) Rule {
	d := r.Path
	if r.WantDir && d != "/" {
		d += "/"
	}
	return Rule{ID: r.ID, Kind: KindDenyPath, Detail: d, Line: r.Line}
}
