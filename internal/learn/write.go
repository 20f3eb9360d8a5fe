package learn

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/assaymcp/assay/internal/policy"
)

// Writing a policy: the YAML lines and comments of its entries.

func accessWords(a policy.Access) string {
	var w []string
	if a&policy.AccessRead != 0 {
		w = append(w, "read")
	}
	if a&policy.AccessWrite != 0 {
		w = append(w, "write")
	}
	if a&policy.AccessExec != 0 {
		w = append(w, "exec")
	}
	return strings.Join(w, ", ")
}

// seen is a rule's comment: what the run did on n paths (opens include
// executions; changes are unlink, rename, mkdir, chmod, ...).
func seen(opens, changes, n int, a policy.Access, example string) string {
	s := "seen: "
	if n > 1 {
		s += fmt.Sprintf("%d paths, ", n)
	}
	var what []string
	if opens > 0 || changes == 0 {
		what = append(what, fmt.Sprintf("%d %s", opens, plural(opens, "open", "opens")))
	}
	if changes > 0 {
		what = append(what, fmt.Sprintf("%d %s", changes, plural(changes, "change", "changes")))
	}
	s += fmt.Sprintf("%s (%s)", strings.Join(what, ", "), accessWords(a))
	if n > 1 {
		s += ", e.g. " + example
	}
	return s
}
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_./@+-][A-Za-z0-9_./@+=~-]*$`)

// yamlString writes s as a plain YAML scalar when that is unambiguous,
// else double-quoted (a JSON string is a YAML double-quoted scalar).
func yamlString(s string) string {
	if plainYAML.MatchString(s) && s != "null" && s != "true" && s != "false" && s != "~" {
		return s
	}
	return strconv.Quote(s) // Go's escapes are a subset of YAML's for valid UTF-8
}

func fileLine(p string, dir bool, a policy.Access) string {
	if dir && p != "/" {
		p += "/"
	}
	return fmt.Sprintf("{path: %s, access: %s}", yamlString(p), a)
}

func netLine(key, val string, ports map[uint16]int, proto policy.Proto) string {
	ps := make([]int, 0, len(ports))
	for p := range ports {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	s := fmt.Sprintf("{%s: %s", key, yamlString(val))
	if !(len(ps) == 1 && ps[0] == 0) {
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = strconv.Itoa(p)
		}
		s += ", ports: [" + strings.Join(strs, ", ") + "]"
	}
	if proto != policy.ProtoAny {
		s += ", proto: " + proto.String()
	}
	return s + "}"
}

// argvText is the command line, each argument quoted when needed (never
// a line break).
func argvText(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if plainYAML.MatchString(a) {
			q[i] = a
		} else {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}

// header is the comment at the top of a written policy.
func header(argv []string) string {
	return "# Written by assay learn from one run of: " + argvText(argv) + "\n" +
		"# Review it before use: it allows what that run did (a directory used in\n" +
		"# several places as a whole subtree), nothing else. Commented-out rules are\n" +
		"# sensitive paths or addresses the run touched: allow them only on purpose.\n"
}

func writeEntries(b *strings.Builder, indent string, es []entry) {
	for _, e := range es {
		b.WriteString(indent + "# " + e.comment + "\n")
		if e.warn != "" {
			b.WriteString(indent + "# WARNING " + e.warn + "; not allowed unless you uncomment it:\n")
			b.WriteString(indent + "# - " + e.line + "\n")
			continue
		}
		b.WriteString(indent + "- " + e.line + "\n")
	}
}

func live(es []entry) int {
	n := 0
	for _, e := range es {
		if e.warn == "" {
			n++
		}
	}
	return n
}

// fresh writes a new policy.
func fresh(o Options, files, nets []entry) []byte {
	var b strings.Builder
	b.WriteString(header(o.Argv))
	b.WriteString("version: 2\nmode: enforce\nfiles:\n  default: deny\n  baseline: runtime\n")
	if live(files) == 0 {
		b.WriteString("  allow: []\n")
		writeEntries(&b, "  ", files)
	} else {
		b.WriteString("  allow:\n")
		writeEntries(&b, "    ", files)
	}
	b.WriteString("network:\n  default: deny\n")
	if live(nets) == 0 {
		b.WriteString("  allow: []\n")
		writeEntries(&b, "  ", nets)
	} else {
		b.WriteString("  allow:\n")
		writeEntries(&b, "    ", nets)
	}
	if hasHost(nets) && len(o.Upstream) > 0 {
		b.WriteString("dns:\n  upstream: [" + upstreamList(o.Upstream) + "]\n")
	}
	return []byte(b.String())
}

func hasHost(es []entry) bool {
	for _, e := range es {
		if e.warn == "" && strings.HasPrefix(e.line, "{host: ") {
			return true
		}
	}
	return false
}
