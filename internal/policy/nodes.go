// Helpers that check one YAML node and build field paths for errors.

package policy

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

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
