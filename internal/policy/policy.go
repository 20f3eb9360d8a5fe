// Package policy parses and validates assay policy files.
//
// # File format (version 1)
//
// A policy is a single YAML document holding one mapping:
//
//	version: 1                 # required; must be 1
//	mode: enforce              # enforce | audit; optional, default enforce
//	network:                   # optional
//	  deny_ports: [22, 23, {port: 5432, id: 40}]
//	  allow_cidrs: [10.0.0.0/8, "2001:db8::/32"]
//	  deny_cidrs: [{cidr: 169.254.169.254/32, id: 41}, "fd00::/8"]
//	files:                     # optional
//	  deny:
//	    - {path: /var/lib/private-demo/credentials.txt, id: 7}
//	    - path: /home/agent/.ssh/  # trailing slash: a directory and its whole subtree
//
// Parsing is strict: unknown fields, wrong types, duplicate mapping keys,
// YAML anchors and aliases, more than one YAML document and nesting deeper
// than [MaxDepth] are errors. Integers must be written in plain decimal
// (no 0x, 0o, leading zeros or underscores) and strings must be YAML strings
// (a quoted "22" is not a port). A null (empty) value for network, files or
// any of the lists is treated as absent / empty. Every error is an [*Error]
// carrying the file, line and dotted field path (e.g.
// network.deny_ports[2].port); Parse reports the first error it finds and
// never returns a partial policy.
//
// Errors are looked for in this order: input size; YAML element count
// ([MaxElements]); YAML syntax; document
// count; anchors/aliases, non-standard tags on mappings and lists, and
// nesting depth (together, in document order); the version field; every
// other field in document order (within a {value, id} entry the value before
// the id); the checks that span lists (a prefix in both allow_cidrs and
// deny_cidrs); id assignment.
//
// # Entries
//
// deny_ports entries are an integer port (1-65535) or {port: N, id: M}.
//
// allow_cidrs and deny_cidrs entries are a string or {cidr: S, id: M}. The
// string is a prefix as understood by net/netip ("10.0.0.0/8",
// "2001:db8::/32"), or a bare address, which means /32 (IPv4) or /128 (IPv6).
// A prefix with host bits set (10.0.0.1/8) is rejected, as is an IPv6 zone
// (%eth0). An IPv4-mapped IPv6 prefix ::ffff:a.b.c.d/N with N >= 96 is
// normalised to the IPv4 prefix a.b.c.d/(N-96), because that is the traffic
// it describes (the kernel sees IPv4 destinations on dual-stack sockets as
// mapped addresses and assay matches them as IPv4); so "::ffff:10.0.0.0/104"
// is stored as 10.0.0.0/8 and a bare "::ffff:192.0.2.1" as 192.0.2.1/32.
// (A ::ffff: prefix shorter than /96 has host bits set and is rejected.)
// The same prefix (after
// normalisation) may appear only once per list, and never in both lists.
//
// files.deny entries are an absolute path string or {path: S, id: M}. The
// path must be clean (no ".", ".." or empty components), at most
// [MaxPathLen] bytes, and free of control characters. A single trailing
// slash marks a directory: the rule covers its whole subtree and the
// resolver checks that the path really is a directory ([FileRule.WantDir]).
// The same path may be listed only once (with or without the slash).
//
// # Rule ids
//
// Every rule has an id that is reported with each block or audit event. An
// explicit id must be 1-[MaxUserID] and unique across the whole policy. Rules
// without an id get one assigned stably: the sections are visited in the
// fixed order network.deny_ports, network.deny_cidrs, network.allow_cidrs,
// files.deny (each in list order) and each id-less rule gets the smallest id
// >= 1 that is neither an explicit id nor already assigned. The same policy
// text therefore always yields the same ids. Ids above MaxUserID are
// reserved for implicit rules; [NotInAllowCIDRsID] is the id of the
// "destination not in allow_cidrs" block.
//
// # Precedence
//
// The kernel side implements these semantics; they are documented here
// because the policy file is where users meet them:
//
//   - deny_ports and deny_cidrs always win: a connection whose destination
//     port is in deny_ports, or whose destination address is in a deny_cidrs
//     prefix, is blocked even if the address is also inside allow_cidrs.
//   - Otherwise, when allow_cidrs is non-empty (for either address family),
//     a destination that is not inside any allow_cidrs prefix is blocked
//     under [NotInAllowCIDRsID]. With an IPv4-only allow list every IPv6
//     destination is therefore blocked, and vice versa.
//   - When allow_cidrs is empty, destinations not denied are allowed.
//   - In audit mode nothing is blocked; the same decisions are reported.
package policy

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
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
}

// Rule is a uniform view of one rule, for reporting.
type Rule struct {
	ID     uint32
	Kind   string // one of the Kind* constants
	Detail string // port number, prefix or path (a directory path ends in "/")
	Line   int    // 0 for the implicit not_in_allow_cidrs rule
}

//go:embed example.yaml
var example []byte

// Example returns (a copy of) the example policy shipped with assay.
func Example() []byte {
	return bytes.Clone(example)
}

// Load reads the policy file at path and parses it. Errors opening or reading
// the file are returned as they come from package os; a file larger than
// MaxPolicyBytes and all content errors are *Error.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxPolicyBytes {
		return nil, tooLarge(path)
	}
	return Parse(path, data)
}

func tooLarge(file string) *Error {
	return &Error{File: file, Msg: fmt.Sprintf("policy is larger than %d bytes (%d MiB)", MaxPolicyBytes, MaxPolicyBytes>>20)}
}

// Parse parses and validates policy text. file is used in error messages and
// stored in Policy.File. On error the policy is nil and the error is an
// *Error.
func Parse(file string, data []byte) (*Policy, error) {
	p, err := parse(file, data)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func parse(file string, data []byte) (*Policy, *Error) {
	if len(data) > MaxPolicyBytes {
		return nil, tooLarge(file)
	}
	ps := &parser{file: file, ids: map[uint32]int{}}
	if n := countElements(data); n > MaxElements {
		return nil, ps.errf(0, "", "policy has too many YAML elements (%d counted, at most %d: room for 160k rules)", n, MaxElements)
	}
	root, err := ps.decode(data)
	if err != nil {
		return nil, err
	}
	if err := ps.precheck(root, 0); err != nil {
		return nil, err
	}
	pol := &Policy{File: file, Version: 1, Mode: ModeEnforce}
	if err := ps.root(root, pol); err != nil {
		return nil, err
	}
	if err := ps.crossCheck(pol); err != nil {
		return nil, err
	}
	if err := ps.assignIDs(pol); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	pol.Digest = hex.EncodeToString(sum[:])
	return pol, nil
}

// HasFileRules reports whether the policy has any files.deny rule.
func (p *Policy) HasFileRules() bool { return len(p.FileDeny) > 0 }

// HasNetworkRules reports whether the policy has any network rule.
func (p *Policy) HasNetworkRules() bool {
	return len(p.DenyPorts) > 0 || len(p.AllowCIDRs) > 0 || len(p.DenyCIDRs) > 0
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
	if len(p.AllowCIDRs) > 0 {
		rs = append(rs, notInAllowRule)
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	return rs
}

// RuleByID returns the rule with the given id.
func (p *Policy) RuleByID(id uint32) (Rule, bool) {
	if id == NotInAllowCIDRsID {
		return notInAllowRule, len(p.AllowCIDRs) > 0
	}
	for _, r := range p.DenyPorts {
		if r.ID == id {
			return portRule(r), true
		}
	}
	for _, r := range p.DenyCIDRs {
		if r.ID == id {
			return cidrRule(r, KindDenyCIDR), true
		}
	}
	for _, r := range p.AllowCIDRs {
		if r.ID == id {
			return cidrRule(r, KindAllowCIDR), true
		}
	}
	for _, r := range p.FileDeny {
		if r.ID == id {
			return fileRule(r), true
		}
	}
	return Rule{}, false
}

// Summary describes the policy in one line, e.g.
// "3 port, 2 allow CIDR, 2 deny CIDR, 2 file rules, mode enforce".
func (p *Policy) Summary() string {
	files := "file rules"
	if len(p.FileDeny) == 1 {
		files = "file rule"
	}
	return fmt.Sprintf("%d port, %d allow CIDR, %d deny CIDR, %d %s, mode %s",
		len(p.DenyPorts), len(p.AllowCIDRs), len(p.DenyCIDRs), len(p.FileDeny), files, p.Mode)
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

// ---- parser ----

type parser struct {
	file string
	ids  map[uint32]int // explicit id -> line
}

func (ps *parser) errf(line int, field, format string, args ...any) *Error {
	return &Error{File: ps.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// yamlError converts an error from the YAML library into an *Error.
func (ps *parser) yamlError(err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if strings.HasPrefix(msg, "unknown anchor") {
		return ps.errf(line, "", "YAML anchors and aliases are not allowed (%s)", msg)
	}
	return ps.errf(line, "", "invalid YAML: %s", msg)
}

// countElements returns an upper bound of the number of nodes the YAML
// parser builds from data, in one pass over the bytes and without
// allocating. Every node is a scalar, which starts a run of non-blank,
// non-flow-indicator bytes (counted 1); or a collection or an implied empty
// scalar, which comes with an indicator: '[' '{' (1: the collection), ','
// '}' (2: at most an empty value, counted twice so that a flow mapping of
// bare keys costs as much per node as any other form), ']' (1), a block
// entry "- " (2: the sequence and an empty entry), a '?' or a value ':' (3:
// the mapping, an empty key and an empty value; 2 after a key). So at most
// 2 nodes per 3 counted. Indicators inside quoted scalars and comments are
// counted too: the bound only ever overestimates.
func countElements(data []byte) int {
	n := 0
	word := false     // inside a run of scalar bytes
	afterKey := false // a scalar ended since the last indicator on this line
	for i, c := range data {
		blankNext := i+1 >= len(data)
		if !blankNext {
			switch data[i+1] {
			case ' ', '\t', '\r', '\n', ',', '[', ']', '{', '}':
				blankNext = true
			}
		}
		switch c {
		case ' ', '\t', '\r':
			if word {
				afterKey = true
			}
			word = false
			continue
		case '\n':
			word, afterKey = false, false
			continue
		case '[', '{', ']':
			n++
			word, afterKey = false, false
			continue
		case '}', ',':
			n += 2
			word, afterKey = false, false
			continue
		case '-':
			if !word && blankNext {
				n += 2
				afterKey = false
				continue
			}
		case '?':
			if !word {
				n += 3
				afterKey = false
				continue
			}
		case ':':
			// A value indicator at a token's start, before a blank or a
			// flow indicator, or right after a quoted key; otherwise part
			// of a plain scalar (an IPv6 address).
			if !word || blankNext || data[i-1] == '"' || data[i-1] == '\'' {
				if word || afterKey {
					n += 2
				} else {
					n += 3
				}
				word, afterKey = false, false
				continue
			}
		}
		if !word {
			n++
			word = true
		}
	}
	return n
}

// decode parses data into the root node of its single YAML document.
func (ps *parser) decode(data []byte) (root *yaml.Node, perr *Error) {
	// The YAML library is not ours; make sure a bug in it cannot take the
	// caller down.
	defer func() {
		if r := recover(); r != nil {
			root, perr = nil, ps.errf(0, "", "invalid YAML: parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ps.errf(0, "", "empty policy")
		}
		return nil, ps.yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, ps.errf(next.Line, "", "more than one YAML document; a policy file holds exactly one")
	case !errors.Is(err, io.EOF):
		return nil, ps.yamlError(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, ps.errf(doc.Line, "", "empty policy")
	}
	root = doc.Content[0]
	if isNull(root) && root.Anchor == "" {
		return nil, ps.errf(root.Line, "", "empty policy")
	}
	return root, nil
}

// precheck rejects anchors, aliases and deep nesting anywhere in the tree,
// reporting the first in document order. depth is the number of enclosing
// mappings and lists.
func (ps *parser) precheck(n *yaml.Node, depth int) *Error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return ps.errf(n.Line, "", "YAML anchors and aliases are not allowed")
	}
	if (n.Kind == yaml.MappingNode && n.ShortTag() != "!!map") || (n.Kind == yaml.SequenceNode && n.ShortTag() != "!!seq") {
		return ps.errf(n.Line, "", "YAML tag %s is not allowed here", quote(n.Tag))
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		depth++
		if depth > MaxDepth {
			return ps.errf(n.Line, "", "nesting deeper than %d levels", MaxDepth)
		}
	}
	for _, c := range n.Content {
		if err := ps.precheck(c, depth); err != nil {
			return err
		}
	}
	return nil
}

type field struct {
	name string
	path string
	key  *yaml.Node
	val  *yaml.Node
}

var simpleKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func join(base, name string) string {
	if !simpleKeyRE.MatchString(name) {
		name = quote(name)
	}
	if base == "" {
		return name
	}
	return base + "." + name
}

func index(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

// quote quotes s for an error message, shortening very long strings.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// fields checks that n is a mapping with string keys, no key twice and only
// known keys, and returns its entries in document order.
func (ps *parser) fields(n *yaml.Node, path string, known ...string) ([]field, *Error) {
	if n.Kind != yaml.MappingNode {
		return nil, ps.typeErr(n, path, "a mapping")
	}
	out := make([]field, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, ps.errf(k.Line, path, "mapping keys must be plain names, got %s", describe(k))
		}
		name := k.Value
		fp := join(path, name)
		if line, dup := seen[name]; dup {
			return nil, ps.errf(k.Line, fp, "field given twice (first at line %d)", line)
		}
		seen[name] = k.Line
		if k.ShortTag() != "!!str" || !slices.Contains(known, name) {
			return nil, ps.errf(k.Line, fp, "unknown field %s (known fields: %s)", quote(name), strings.Join(known, ", "))
		}
		out = append(out, field{name: name, path: fp, key: k, val: v})
	}
	return out, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is, for type errors.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return "the string " + quote(n.Value)
	case "!!int":
		return "the integer " + quote(n.Value)
	case "!!float":
		return "the number " + quote(n.Value)
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "an empty value"
	}
	return "a value of type " + quote(n.ShortTag())
}

func (ps *parser) typeErr(n *yaml.Node, path, want string) *Error {
	return ps.errf(n.Line, path, "expected %s, got %s", want, describe(n))
}

// list returns the items of a list; a null value is an empty list.
func (ps *parser) list(n *yaml.Node, path string) ([]*yaml.Node, *Error) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, ps.typeErr(n, path, "a list")
	}
	return n.Content, nil
}

var decimalRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// integer checks that n is a plain decimal integer and returns it. fits is
// false when the value does not fit in an int64; text is the value as
// written.
func (ps *parser) integer(n *yaml.Node, path string) (v int64, fits bool, text string, err *Error) {
	if n.Kind != yaml.ScalarNode {
		return 0, false, "", ps.typeErr(n, path, "an integer")
	}
	switch tag := n.ShortTag(); {
	case tag == "!!int":
	case tag == "!!float" && decimalRE.MatchString(n.Value):
		// The YAML library resolves integers beyond 64 bits as floats.
	default:
		return 0, false, "", ps.typeErr(n, path, "an integer")
	}
	if !decimalRE.MatchString(n.Value) {
		return 0, false, "", ps.errf(n.Line, path, "write %s as a plain decimal integer", quote(n.Value))
	}
	v, perr := strconv.ParseInt(n.Value, 10, 64)
	return v, perr == nil, n.Value, nil
}

// intRange parses an integer in [lo, hi].
func (ps *parser) intRange(n *yaml.Node, path string, lo, hi int64) (int64, *Error) {
	v, fits, text, err := ps.integer(n, path)
	if err != nil {
		return 0, err
	}
	if !fits || v < lo || v > hi {
		return 0, ps.errf(n.Line, path, "%s is outside %d-%d", text, lo, hi)
	}
	return v, nil
}

func (ps *parser) str(n *yaml.Node, path, want string) (string, *Error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", ps.typeErr(n, path, want)
	}
	return n.Value, nil
}

func (ps *parser) id(n *yaml.Node, path string) (uint32, *Error) {
	v, fits, text, err := ps.integer(n, path)
	if err != nil {
		return 0, err
	}
	if !fits || v < 1 || v > int64(MaxUserID) {
		return 0, ps.errf(n.Line, path, "id %s is outside 1-%d (higher ids are reserved)", text, MaxUserID)
	}
	id := uint32(v)
	if line, dup := ps.ids[id]; dup {
		return 0, ps.errf(n.Line, path, "id %d already used at line %d", id, line)
	}
	ps.ids[id] = n.Line
	return id, nil
}

func (ps *parser) root(n *yaml.Node, pol *Policy) *Error {
	if n.Kind != yaml.MappingNode {
		return ps.errf(n.Line, "", "a policy must be a mapping starting with \"version: 1\", got %s", describe(n))
	}
	// The version is checked before anything else so that a policy written
	// for a newer assay is reported as such rather than as unknown fields.
	var version *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!str" && k.Value == "version" {
			version = n.Content[i+1]
			break
		}
	}
	if version == nil {
		return ps.errf(n.Line, "version", "required field missing (add \"version: 1\")")
	}
	v, fits, text, err := ps.integer(version, "version")
	if err != nil {
		return err
	}
	if !fits || v != 1 {
		return ps.errf(version.Line, "version", "unknown version %s: this assay understands version 1", text)
	}

	fs, err := ps.fields(n, "", "version", "mode", "network", "files")
	if err != nil {
		return err
	}
	for _, f := range fs {
		switch f.name {
		case "mode":
			s, err := ps.str(f.val, f.path, "enforce or audit")
			if err != nil {
				return err
			}
			switch s {
			case "enforce":
				pol.Mode = ModeEnforce
			case "audit":
				pol.Mode = ModeAudit
			default:
				return ps.errf(f.val.Line, f.path, "unknown mode %s; use enforce or audit", quote(s))
			}
		case "network":
			if err := ps.network(f.val, f.path, pol); err != nil {
				return err
			}
		case "files":
			if err := ps.files(f.val, f.path, pol); err != nil {
				return err
			}
		}
	}
	return nil
}

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

func (ps *parser) files(n *yaml.Node, path string, pol *Policy) *Error {
	if isNull(n) {
		return nil
	}
	fs, err := ps.fields(n, path, "deny")
	if err != nil {
		return err
	}
	for _, f := range fs {
		items, err := ps.list(f.val, f.path)
		if err != nil {
			return err
		}
		if pol.FileDeny, err = ps.paths(items, f.path); err != nil {
			return err
		}
	}
	return nil
}

// entry splits a list entry that is either a scalar or a mapping
// {key: value, id: N}. It returns the value node and its field path, and the
// id node and its path (nil if the entry has no id). The caller validates
// the value first, then the id.
func (ps *parser) entry(n *yaml.Node, path, key, want string) (val *yaml.Node, valPath string, id *yaml.Node, idPath string, err *Error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n, path, nil, "", nil
	case yaml.MappingNode:
	default:
		return nil, "", nil, "", ps.typeErr(n, path, want+" or a mapping {"+key+": ..., id: ...}")
	}
	fs, err := ps.fields(n, path, key, "id")
	if err != nil {
		return nil, "", nil, "", err
	}
	for _, f := range fs {
		if f.name == "id" {
			id, idPath = f.val, f.path
		} else {
			val = f.val
		}
	}
	if val == nil {
		return nil, "", nil, "", ps.errf(n.Line, join(path, key), "required field missing")
	}
	return val, join(path, key), id, idPath, nil
}

// optID validates an optional id node; 0 means none.
func (ps *parser) optID(n *yaml.Node, path string) (uint32, *Error) {
	if n == nil {
		return 0, nil
	}
	return ps.id(n, path)
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

func (ps *parser) paths(items []*yaml.Node, path string) ([]FileRule, *Error) {
	out := make([]FileRule, 0, len(items))
	seen := map[string]int{}
	for i, it := range items {
		ip := index(path, i)
		vn, vp, idn, idp, err := ps.entry(it, ip, "path", "a path string")
		if err != nil {
			return nil, err
		}
		s, err := ps.str(vn, vp, "a path string")
		if err != nil {
			return nil, err
		}
		p, dir, msg := checkPath(s)
		if msg != "" {
			return nil, ps.errf(vn.Line, vp, "%s", msg)
		}
		if line, dup := seen[p]; dup {
			return nil, ps.errf(vn.Line, vp, "path %s already listed at line %d", p, line)
		}
		seen[p] = vn.Line
		id, err := ps.optID(idn, idp)
		if err != nil {
			return nil, err
		}
		out = append(out, FileRule{ID: id, Path: p, WantDir: dir, Line: it.Line})
	}
	return out, nil
}

// checkPath validates a files.deny path and returns it without its trailing
// slash (except "/") and whether it had one. On error it returns a message.
func checkPath(s string) (string, bool, string) {
	if s == "" {
		return "", false, "path is empty"
	}
	if len(s) > MaxPathLen {
		return "", false, fmt.Sprintf("path is %d bytes long; the limit is %d", len(s), MaxPathLen)
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return "", false, fmt.Sprintf("path %s is not valid UTF-8", strconv.Quote(s))
			}
		}
		if unicode.IsControl(r) {
			return "", false, fmt.Sprintf("path %s contains a control character", strconv.Quote(s))
		}
	}
	if s[0] != '/' {
		return "", false, fmt.Sprintf("path %s is not absolute", quote(s))
	}
	if s == "/" {
		return "/", true, ""
	}
	base, dir := s, false
	if strings.HasSuffix(s, "/") {
		base, dir = s[:len(s)-1], true
	}
	if clean := path.Clean(base); clean != base || base == "/" {
		want := clean
		if dir && clean != "/" {
			want += "/"
		}
		return "", false, fmt.Sprintf("path %s is not clean; write %s", s, want)
	}
	return base, dir, ""
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

// assignIDs gives every rule without an explicit id one; see the package doc.
func (ps *parser) assignIDs(pol *Policy) *Error {
	next := uint32(1)
	assign := func(id *uint32, line int, field string) *Error {
		if *id != 0 {
			return nil
		}
		for {
			if _, used := ps.ids[next]; !used {
				break
			}
			next++
		}
		if next > MaxUserID {
			return ps.errf(line, field, "too many rules: ids 1-%d are all used", MaxUserID)
		}
		*id = next
		next++
		return nil
	}
	for i := range pol.DenyPorts {
		if err := assign(&pol.DenyPorts[i].ID, pol.DenyPorts[i].Line, index("network.deny_ports", i)); err != nil {
			return err
		}
	}
	for i := range pol.DenyCIDRs {
		if err := assign(&pol.DenyCIDRs[i].ID, pol.DenyCIDRs[i].Line, index("network.deny_cidrs", i)); err != nil {
			return err
		}
	}
	for i := range pol.AllowCIDRs {
		if err := assign(&pol.AllowCIDRs[i].ID, pol.AllowCIDRs[i].Line, index("network.allow_cidrs", i)); err != nil {
			return err
		}
	}
	for i := range pol.FileDeny {
		if err := assign(&pol.FileDeny[i].ID, pol.FileDeny[i].Line, index("files.deny", i)); err != nil {
			return err
		}
	}
	return nil
}
