// The walk over a mapping's fields that every section of both policy
// versions shares: a table names the known fields (in the order error
// messages list them), the required ones, and how each value is parsed.
// Versions 1 and 2 differ only in their tables.

package policy

import (
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A section is one known field of a mapping.
type section struct {
	name string
	// required, when set, makes the field required; it is the hint of the
	// error, e.g. `add "default: deny" or "default: allow"`.
	required string
	// parse parses the field's value; nil: read elsewhere (version).
	parse func(ps *parser, n *yaml.Node, path string, pol *Policy) *Error
}

// walk checks that n is a mapping (null: an empty one) with string keys,
// no key twice and only the fields of table, that the required ones are
// given, then parses each field in document order. It returns the fields.
func (ps *parser) walk(n *yaml.Node, path string, pol *Policy, table ...section) ([]field, *Error) {
	var fs []field
	if !isNull(n) {
		names := make([]string, len(table))
		for i, s := range table {
			names[i] = s.name
		}
		var err *Error
		if fs, err = ps.fields(n, path, names...); err != nil {
			return nil, err
		}
	}
	for _, s := range table {
		if s.required != "" && fieldNamed(fs, s.name) == nil {
			return nil, ps.errf(n.Line, join(path, s.name), "required field missing (%s)", s.required)
		}
	}
	for _, f := range fs {
		s := table[slices.IndexFunc(table, func(s section) bool { return s.name == f.name })]
		if s.parse == nil {
			continue
		}
		if err := s.parse(ps, f.val, f.path, pol); err != nil {
			return nil, err
		}
	}
	return fs, nil
}

// listOf is the parse of a field whose value is a list of entries.
func listOf(parse func(ps *parser, items []*yaml.Node, path string, pol *Policy) *Error) func(*parser, *yaml.Node, string, *Policy) *Error {
	return func(ps *parser, n *yaml.Node, path string, pol *Policy) *Error {
		items, err := ps.list(n, path)
		if err != nil {
			return err
		}
		return parse(ps, items, path, pol)
	}
}

// fieldNamed returns the field name of fs, nil when it is not given.
func fieldNamed(fs []field, name string) *field {
	for i := range fs {
		if fs[i].name == name {
			return &fs[i]
		}
	}
	return nil
}

// The root of each version: the same sections but for network and files
// (and dns, version 2 only); the version is read before the walk.
var (
	rootV1 = []section{
		{name: "version"},
		{name: "mode", parse: (*parser).mode},
		{name: "network", parse: (*parser).network},
		{name: "files", parse: (*parser).files},
		{name: "limits", parse: (*parser).limits},
		{name: "mcp", parse: (*parser).mcpSection},
	}
	rootV2 = []section{
		{name: "version"},
		{name: "mode", parse: (*parser).mode},
		{name: "network", parse: (*parser).networkV2},
		{name: "files", parse: (*parser).filesV2},
		{name: "limits", parse: (*parser).limits},
		{name: "mcp", parse: (*parser).mcpSection},
		{name: "dns", parse: (*parser).dnsSection},
	}
)

// defaultRequired is the hint of a missing files.default or
// network.default (version 2).
const defaultRequired = `add "default: deny" or "default: allow"`

// rootV2 parses the fields of a version 2 policy.
func (ps *parser) rootV2(n *yaml.Node, pol *Policy) *Error {
	pol.Version = 2
	fs, err := ps.walk(n, "", pol, rootV2...)
	if err != nil {
		return err
	}
	dnsField := fieldNamed(fs, "dns")
	if dnsField != nil && !pol.HasHosts() {
		return ps.errf(dnsField.key.Line, dnsField.path, "a dns section needs at least one network.allow entry with host: (without one no name is allowed and the section has no effect)")
	}
	if dnsField == nil && pol.HasHosts() {
		pol.DNS.Grace = DefaultDNSGrace
	}
	return nil
}

func (ps *parser) defaultField(n *yaml.Node, path string) (Default, *Error) {
	i, err := ps.oneOf(n, path, "default", "deny", "allow")
	return [...]Default{DefaultDeny, DefaultAllow}[i], err
}

// oneOf parses a string node naming one of names (the error calls it
// what, e.g. "mode") and returns its index (0 with an error).
func (ps *parser) oneOf(n *yaml.Node, path, what string, names ...string) (int, *Error) {
	use := strings.Join(names, " or ")
	s, err := ps.str(n, path, use)
	if err != nil {
		return 0, err
	}
	i := slices.Index(names, s)
	if i < 0 {
		return 0, ps.errf(n.Line, path, "unknown %s %s; use %s", what, quote(s), use)
	}
	return i, nil
}
