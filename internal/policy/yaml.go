// The YAML safety pre-pass: everything checked before the fields are
// looked at (size in elements, syntax, one document, anchors, aliases,
// tags and depth).

package policy

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

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
