package policy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func nodeCount(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += nodeCount(k)
	}
	return c
}

// checkBound fails when the YAML parser builds more nodes from s than
// countElements counted (the document node aside).
func checkBound(t *testing.T, s string) {
	t.Helper()
	var doc yaml.Node
	func() {
		defer func() { recover() }()
		if yaml.Unmarshal([]byte(s), &doc) != nil {
			doc = yaml.Node{}
		}
	}()
	if nodes := nodeCount(&doc) - 1; nodes > countElements([]byte(s)) {
		t.Errorf("%q: %d nodes, countElements %d", s, nodes, countElements([]byte(s)))
	}
}

// TestCountElementsBound: countElements is an upper bound of the nodes
// the YAML parser builds, for hand-picked inputs and for random strings
// over YAML's significant bytes.
func TestCountElementsBound(t *testing.T) {
	for _, s := range []string{
		"", "a", "a: b", "a:", ":", ": b", "? ", "? \n? \n? \n", "- - - -", "-\n-\n-\n",
		"[]", "{}", "[a, b]", "{a, b}", "{a: b, c}", "[a: b]", "[a:]", "[:]", "[? a, ? b]", "{? , ? }",
		`{"a":b}`, `{'a':b}`, "{a :b}", "[a?b, c?d]", "[a:b]", "{a:b}", "? ? ? a", "a:\n  b:\n    c:\n",
		"- a: b\n  c: d\n- e", "x: 2001:db8::/32", "!!map {}", "&a x", "*a", "a: &x b\nc: *x",
		"--- a\n--- b", "|\n  text\n", "a: [1, [2, [3, {b: c}]]]", "a: \"x, y: z\"", "- [a, {b: [c, d: e]}]",
		"version: 1\nnetwork:\n  deny_ports: [22, {port: 5432, id: 40}]\n", string(Example()),
	} {
		checkBound(t, s)
	}
	alphabet := []string{"a", "1", " ", "\n", "\n  ", ":", ": ", "- ", "-", "?", "? ", ",", "[", "]", "{", "}", `"`, "'", "#", "&a ", "*a", "!!str ", "|", ">", "\t", "---", "b:", "::"}
	r := rand.New(rand.NewPCG(1, 2))
	n := 100000
	if testing.Short() {
		n = 20000
	}
	for range n {
		var b strings.Builder
		for range 1 + r.IntN(24) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		checkBound(t, b.String())
		if t.Failed() {
			return
		}
	}
}

// TestTooManyElements: a policy of many tiny elements is refused before
// the YAML parser builds them, with an error saying so; a large valid
// policy of 160k rules in their longest form still parses.
func TestTooManyElements(t *testing.T) {
	bomb := "version: 1\nx: [" + strings.Repeat("1,", MaxElements/3) + "1]\n"
	_, err := Parse("bomb.yaml", []byte(bomb))
	if err == nil || !strings.Contains(err.Error(), "too many YAML elements") || !strings.HasPrefix(err.Error(), "bomb.yaml: ") {
		t.Errorf("bomb: %v", err)
	}
	var b strings.Builder
	b.WriteString("version: 1\nnetwork:\n  deny_cidrs:\n")
	const rules = 160000
	for i := range rules {
		b.WriteString("    - {cidr: 10." + itoa(i>>16&255) + "." + itoa(i>>8&255) + "." + itoa(i&255) + "/32, id: " + itoa(i+1) + "}\n")
	}
	if n := countElements([]byte(b.String())); n > MaxElements {
		t.Fatalf("%d rules count %d elements, more than %d", rules, n, MaxElements)
	}
	if testing.Short() {
		return
	}
	p, err := Parse("big.yaml", []byte(b.String()))
	if err != nil || len(p.DenyCIDRs) != rules {
		t.Errorf("160k rules: %v", err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
