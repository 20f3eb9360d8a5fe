package learn

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/assaymcp/assay/internal/policy"
	"go.yaml.in/yaml/v3"
)

// mergeBase adds the entries to BASE's files.allow and network.allow (a
// section BASE leaves at default: allow needs nothing): its other content
// and its comments are kept. Each added entry carries a "learned:" comment;
// sensitive entries are comments after the list.
func mergeBase(o Options, files, nets []entry) ([]byte, error) {
	if o.Base.Version != 2 {
		return nil, fmt.Errorf("%s: version %d: assay learn extends version 2 policies only (write the rules as version 2 first)", o.Base.File, o.Base.Version)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(o.BaseText, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Base.File, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a mapping", o.Base.File)
	}
	root := doc.Content[0]
	if o.Base.FilesSet && o.Base.FileDefault == policy.DefaultDeny {
		if err := appendTo(root, "files", files); err != nil {
			return nil, err
		}
	}
	if o.Base.NetworkSet && o.Base.NetDefault == policy.DefaultDeny {
		if err := appendTo(root, "network", nets); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	b.WriteString(fmt.Sprintf("# %s, and what assay learn saw in one run of: %s that it did not allow (the \"learned:\" entries; review them)\n", o.Base.File, argvText(o.Argv)))
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func appendTo(root *yaml.Node, section string, es []entry) error {
	if len(es) == 0 {
		return nil
	}
	sec := mapValue(root, section)
	if sec == nil || sec.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: not a mapping", section)
	}
	var key *yaml.Node
	for i := 0; i+1 < len(sec.Content); i += 2 {
		if sec.Content[i].Value == "allow" {
			key = sec.Content[i]
		}
	}
	allow := mapValue(sec, "allow")
	if allow == nil {
		key = &yaml.Node{Kind: yaml.ScalarNode, Value: "allow"}
		allow = &yaml.Node{Kind: yaml.SequenceNode}
		sec.Content = append(sec.Content, key, allow)
	}
	if allow.Kind != yaml.SequenceNode {
		return errors.New(section + ".allow: not a list")
	}
	allow.Style = 0 // block style, one entry a line
	var warned []string
	var first *yaml.Node
	for _, e := range es {
		if e.warn != "" {
			warned = append(warned, "# learned: "+e.comment, "# WARNING "+e.warn+"; not allowed unless you uncomment it:", "# - "+e.line)
			continue
		}
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(e.line), &n); err != nil {
			return fmt.Errorf("%s (a bug): %w", e.line, err)
		}
		item := n.Content[0]
		item.Style = 0 // block: the emitter wraps long flow mappings with a trailing comma
		item.HeadComment = "# learned: " + e.comment
		allow.Content = append(allow.Content, item)
		if first == nil {
			first = item
		}
	}
	if len(warned) > 0 {
		// Comments before the first added entry (or the list): the
		// emitter misplaces comments after a list.
		c := strings.Join(warned, "\n")
		if first != nil {
			first.HeadComment = c + "\n" + first.HeadComment
		} else {
			key.HeadComment = strings.TrimSpace(key.HeadComment + "\n" + c)
		}
	}
	return nil
}
