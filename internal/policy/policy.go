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
//	limits:                    # optional, `assay run` only (see limits.go)
//	  memory: 512M
//	  pids: 256
//	  cpu: 0.5
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
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

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

type parser struct {
	file string
	ids  map[uint32]int // explicit id -> line
}

func (ps *parser) errf(line int, field, format string, args ...any) *Error {
	return &Error{File: ps.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (ps *parser) mode(n *yaml.Node, path string, pol *Policy) *Error {
	i, err := ps.oneOf(n, path, "mode", "enforce", "audit")
	pol.Mode = [...]Mode{ModeEnforce, ModeAudit}[i]
	return err
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
	if fits && v == 2 {
		return ps.rootV2(n, pol)
	}
	if !fits || v != 1 {
		return ps.errf(version.Line, "version", "unknown version %s: this assay understands versions 1 and 2", text)
	}

	_, err = ps.walk(n, "", pol, rootV1...)
	return err
}
