package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// specPolicy is the example from the format description.
const specPolicy = `version: 1
mode: enforce
network:
  deny_ports: [22, 23, {port: 5432, id: 40}]
  allow_cidrs: [10.0.0.0/8, "2001:db8::/32"]
  deny_cidrs: [{cidr: 169.254.169.254/32, id: 41}, "fd00::/8"]
files:
  deny:
    - {path: /var/lib/private-demo/credentials.txt, id: 7}
    - path: /home/agent/.ssh/
`

func mustParse(t *testing.T, in string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte(in))
	if err != nil {
		t.Fatalf("Parse(%q): %v", in, err)
	}
	if p == nil {
		t.Fatalf("Parse(%q): nil policy and nil error", in)
	}
	return p
}

func TestParseErrors(t *testing.T) {
	// The root mapping is one level, so MaxDepth-1 lists fit inside it.
	deep := "version: 1\nx: " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + "\n"
	tests := []struct {
		name  string
		in    string
		line  int
		field string
		msg   string // substring of Msg; exact when it starts with "="
	}{
		// Document level.
		{"empty", "", 0, "", "=empty policy"},
		{"only comments", "# nothing\n# here\n", 0, "", "=empty policy"},
		{"null document", "null\n", 1, "", "=empty policy"},
		{"tilde document", "~\n", 1, "", "=empty policy"},
		{"bare document marker", "---\n", 2, "", "=empty policy"},
		{"yaml syntax", "version: 1\nnetwork: [\n", 2, "", "invalid YAML"},
		{"yaml tab indent", "version: 1\n\tmode: audit\n", 2, "", "invalid YAML"},
		{"two documents", "version: 1\n---\nversion: 1\n", 2, "", "more than one YAML document"},
		{"trailing empty document", "version: 1\n---\n", 2, "", "more than one YAML document"},
		{"root is list", "- version: 1\n", 1, "", "a policy must be a mapping"},
		{"root is scalar", "hello\n", 1, "", "got the string \"hello\""},

		// Anchors, aliases, tags, depth.
		{"anchor on scalar", "version: &v 1\n", 1, "", "=YAML anchors and aliases are not allowed"},
		{"anchor on mapping", "version: 1\nnetwork: &n\n  deny_ports: [22]\n", 2, "", "=YAML anchors and aliases are not allowed"},
		{"alias", "version: 1\nnetwork:\n  deny_ports: [&p 22, *p]\n", 3, "", "=YAML anchors and aliases are not allowed"},
		{"unknown alias", "version: 1\nmode: *m\n", 0, "", "YAML anchors and aliases are not allowed"},
		{"merge key", "version: 1\na: &a {x: 1}\nnetwork:\n  <<: *a\n", 2, "", "=YAML anchors and aliases are not allowed"},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nversion: 1\n", 1, "", "=YAML anchors and aliases are not allowed"},
		{"too deep", "version: 1\nx: " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + "\n", 2, "", "nesting deeper than 16 levels"},
		{"max depth is still checked normally", deep, 2, "x", "unknown field"},
		{"custom tag on mapping", "version: 1\nnetwork: !custom {deny_ports: [22]}\n", 2, "", "YAML tag \"!custom\" is not allowed"},

		// version.
		{"version missing", "mode: audit\n", 1, "version", "required field missing"},
		{"version missing in flow mapping", "\n\n{mode: audit}\n", 3, "version", "required field missing"},
		{"version 3", "version: 3\nnew_thing: yes\n", 1, "version", "=unknown version 3: this assay understands versions 1 and 2"},
		{"version 0", "version: 0\n", 1, "version", "=unknown version 0: this assay understands versions 1 and 2"},
		{"version huge", "version: 99999999999999999999\n", 1, "version", "=unknown version 99999999999999999999: this assay understands versions 1 and 2"},
		{"version string", "version: \"1\"\n", 1, "version", "=expected an integer, got the string \"1\""},
		{"version float", "version: 1.0\n", 1, "version", "=expected an integer, got the number \"1.0\""},
		{"version null", "version:\n", 1, "version", "=expected an integer, got an empty value"},
		{"version list", "version: [1]\n", 1, "version", "=expected an integer, got a list"},
		{"version hex", "version: 0x1\n", 1, "version", "=write \"0x1\" as a plain decimal integer"},
		{"version leading zero", "version: 01\n", 1, "version", "=write \"01\" as a plain decimal integer"},
		{"version twice", "version: 1\nversion: 1\n", 2, "version", "=field given twice (first at line 1)"},

		// Unknown and duplicate fields.
		{"unknown root field", "version: 1\nnetwrok: {}\n", 2, "netwrok", "unknown field \"netwrok\" (known fields: version, mode, network, files, limits, mcp)"},
		{"unknown network field", "version: 1\nnetwork:\n  deny_port: [22]\n", 3, "network.deny_port", "unknown field \"deny_port\""},
		{"unknown files field", "version: 1\nfiles:\n  allow: []\n", 3, "files.allow", "unknown field \"allow\""},
		{"unknown port entry field", "version: 1\nnetwork:\n  deny_ports:\n    - {port: 22, proto: tcp}\n", 4, "network.deny_ports[0].proto", "unknown field \"proto\""},
		{"unknown cidr entry field", "version: 1\nnetwork:\n  deny_cidrs:\n    - cidr: 10.0.0.0/8\n      note: x\n", 5, "network.deny_cidrs[0].note", "unknown field"},
		{"unknown path entry field", "version: 1\nfiles:\n  deny:\n    - {path: /etc/shadow, dir: true}\n", 4, "files.deny[0].dir", "unknown field"},
		{"non-string key", "version: 1\n1: x\n", 2, "1", "unknown field \"1\""},
		{"odd key is quoted in field", "version: 1\n\"a b\": x\n", 2, "\"a b\"", "unknown field"},
		{"complex key", "version: 1\n? [a]\n: x\n", 2, "", "mapping keys must be plain names, got a list"},
		{"duplicate section", "version: 1\nnetwork: {}\nfiles: {}\nnetwork: {}\n", 4, "network", "=field given twice (first at line 2)"},
		{"duplicate entry key", "version: 1\nnetwork:\n  deny_ports: [{port: 22, port: 23}]\n", 3, "network.deny_ports[0].port", "field given twice"},

		// mode.
		{"mode unknown", "version: 1\nmode: block\n", 2, "mode", "=unknown mode \"block\"; use enforce or audit"},
		{"mode case", "version: 1\nmode: Audit\n", 2, "mode", "unknown mode \"Audit\""},
		{"mode int", "version: 1\nmode: 1\n", 2, "mode", "=expected enforce or audit, got the integer \"1\""},
		{"mode null", "version: 1\nmode:\n", 2, "mode", "expected enforce or audit, got an empty value"},

		// Wrong container types.
		{"network list", "version: 1\nnetwork: [22]\n", 2, "network", "=expected a mapping, got a list"},
		{"network string", "version: 1\nnetwork: none\n", 2, "network", "expected a mapping, got the string \"none\""},
		{"files list", "version: 1\nfiles:\n  - /etc/shadow\n", 3, "files", "expected a mapping, got a list"},
		{"deny_ports mapping", "version: 1\nnetwork:\n  deny_ports: {port: 22}\n", 3, "network.deny_ports", "=expected a list, got a mapping"},
		{"deny_ports scalar", "version: 1\nnetwork:\n  deny_ports: 22\n", 3, "network.deny_ports", "=expected a list, got the integer \"22\""},
		{"allow_cidrs scalar", "version: 1\nnetwork:\n  allow_cidrs: 10.0.0.0/8\n", 3, "network.allow_cidrs", "expected a list"},
		{"files.deny mapping", "version: 1\nfiles:\n  deny: {path: /x}\n", 3, "files.deny", "expected a list"},

		// deny_ports.
		{"spec example", "version: 1\nnetwork:\n  deny_ports: [22,\n    23,\n    {port: 70000}]\n", 5, "network.deny_ports[2].port", "=70000 is outside 1-65535"},
		{"port zero", "version: 1\nnetwork:\n  deny_ports: [0]\n", 3, "network.deny_ports[0]", "=0 is outside 1-65535"},
		{"port negative", "version: 1\nnetwork:\n  deny_ports:\n    - 22\n    - -1\n", 5, "network.deny_ports[1]", "=-1 is outside 1-65535"},
		{"port overflow int64", "version: 1\nnetwork:\n  deny_ports: [123456789012345678901234567890]\n", 3, "network.deny_ports[0]", "=123456789012345678901234567890 is outside 1-65535"},
		{"port 65536", "version: 1\nnetwork:\n  deny_ports: [65536]\n", 3, "network.deny_ports[0]", "=65536 is outside 1-65535"},
		{"port string", "version: 1\nnetwork:\n  deny_ports: [ssh]\n", 3, "network.deny_ports[0]", "=expected an integer, got the string \"ssh\""},
		{"port quoted", "version: 1\nnetwork:\n  deny_ports: [\"22\"]\n", 3, "network.deny_ports[0]", "expected an integer, got the string \"22\""},
		{"port float", "version: 1\nnetwork:\n  deny_ports: [22.5]\n", 3, "network.deny_ports[0]", "expected an integer, got the number"},
		{"port null entry", "version: 1\nnetwork:\n  deny_ports:\n    -\n", 4, "network.deny_ports[0]", "expected an integer, got an empty value"},
		{"port list entry", "version: 1\nnetwork:\n  deny_ports: [[22]]\n", 3, "network.deny_ports[0]", "=expected a port number or a mapping {port: ..., id: ...}, got a list"},
		{"port mapping string", "version: 1\nnetwork:\n  deny_ports: [{port: ssh}]\n", 3, "network.deny_ports[0].port", "expected an integer"},
		{"port mapping missing port", "version: 1\nnetwork:\n  deny_ports:\n    - id: 5\n", 4, "network.deny_ports[0].port", "=required field missing"},
		{"port duplicate", "version: 1\nnetwork:\n  deny_ports:\n    - 22\n    - 23\n    - 22\n", 6, "network.deny_ports[2]", "=port 22 already listed at line 4"},
		{"port duplicate mapping", "version: 1\nnetwork:\n  deny_ports:\n    - 22\n    - {port: 22, id: 9}\n", 5, "network.deny_ports[1].port", "=port 22 already listed at line 4"},

		// ids.
		{"id zero", "version: 1\nnetwork:\n  deny_ports: [{port: 22, id: 0}]\n", 3, "network.deny_ports[0].id", "=id 0 is outside 1-999999 (higher ids are reserved)"},
		{"id reserved", "version: 1\nnetwork:\n  deny_ports: [{port: 22, id: 1000000}]\n", 3, "network.deny_ports[0].id", "id 1000000 is outside 1-999999"},
		{"id negative", "version: 1\nfiles:\n  deny: [{path: /x, id: -3}]\n", 3, "files.deny[0].id", "id -3 is outside 1-999999"},
		{"id huge", "version: 1\nfiles:\n  deny: [{path: /x, id: 99999999999999999999}]\n", 3, "files.deny[0].id", "id 99999999999999999999 is outside 1-999999"},
		{"id string", "version: 1\nnetwork:\n  deny_cidrs: [{cidr: 10.0.0.0/8, id: \"7\"}]\n", 3, "network.deny_cidrs[0].id", "=expected an integer, got the string \"7\""},
		{"id null", "version: 1\nnetwork:\n  deny_cidrs:\n    - cidr: 10.0.0.0/8\n      id:\n", 5, "network.deny_cidrs[0].id", "expected an integer, got an empty value"},
		{"id duplicate across sections", "version: 1\nnetwork:\n  deny_ports:\n    - {port: 22, id: 7}\nfiles:\n  deny:\n    - {path: /etc/shadow, id: 7}\n", 7, "files.deny[0].id", "=id 7 already used at line 4"},
		{"id duplicate in list", "version: 1\nnetwork:\n  allow_cidrs:\n    - {cidr: 10.0.0.0/8, id: 3}\n    - {cidr: 192.168.0.0/16, id: 3}\n", 5, "network.allow_cidrs[1].id", "=id 3 already used at line 4"},
		{"value checked before id", "version: 1\nnetwork:\n  deny_ports: [{id: 0, port: 0}]\n", 3, "network.deny_ports[0].port", "=0 is outside 1-65535"},

		// CIDRs.
		{"cidr garbage", "version: 1\nnetwork:\n  deny_cidrs: [example.com]\n", 3, "network.deny_cidrs[0]", "=\"example.com\" is not a valid CIDR prefix or address"},
		{"cidr bad prefix", "version: 1\nnetwork:\n  deny_cidrs: [10.0.0.0/33]\n", 3, "network.deny_cidrs[0]", "=\"10.0.0.0/33\" is not a valid CIDR prefix"},
		{"cidr leading zeros", "version: 1\nnetwork:\n  allow_cidrs: [010.0.0.0/8]\n", 3, "network.allow_cidrs[0]", "is not a valid CIDR prefix"},
		{"cidr host bits", "version: 1\nnetwork:\n  allow_cidrs:\n    - 10.0.0.1/8\n", 4, "network.allow_cidrs[0]", "=10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"},
		{"cidr host bits v6", "version: 1\nnetwork:\n  deny_cidrs: [{cidr: \"2001:db8::1/32\"}]\n", 3, "network.deny_cidrs[0].cidr", "=2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?"},
		{"cidr zone address", "version: 1\nnetwork:\n  deny_cidrs: [\"fe80::1%eth0\"]\n", 3, "network.deny_cidrs[0]", "IPv6 zones (%eth0) are not allowed"},
		{"cidr zone prefix", "version: 1\nnetwork:\n  deny_cidrs: [\"fe80::%eth0/64\"]\n", 3, "network.deny_cidrs[0]", "IPv6 zones (%eth0) are not allowed"},
		{"cidr int", "version: 1\nnetwork:\n  deny_cidrs: [10]\n", 3, "network.deny_cidrs[0]", "=expected a CIDR string, got the integer \"10\""},
		{"cidr mapping int", "version: 1\nnetwork:\n  deny_cidrs: [{cidr: 10}]\n", 3, "network.deny_cidrs[0].cidr", "expected a CIDR string"},
		{"cidr mapping missing", "version: 1\nnetwork:\n  deny_cidrs: [{id: 4}]\n", 3, "network.deny_cidrs[0].cidr", "=required field missing"},
		{"cidr list entry", "version: 1\nnetwork:\n  allow_cidrs: [[10.0.0.0/8]]\n", 3, "network.allow_cidrs[0]", "expected a CIDR string or a mapping {cidr: ..., id: ...}, got a list"},
		{"cidr duplicate", "version: 1\nnetwork:\n  deny_cidrs:\n    - 10.0.0.0/8\n    - {cidr: 10.0.0.0/8, id: 2}\n", 5, "network.deny_cidrs[1].cidr", "=10.0.0.0/8 already listed at line 4"},
		{"cidr duplicate bare and /32", "version: 1\nnetwork:\n  allow_cidrs:\n    - 192.0.2.1\n    - 192.0.2.1/32\n", 5, "network.allow_cidrs[1]", "=192.0.2.1/32 already listed at line 4"},
		{"cidr duplicate via mapped", "version: 1\nnetwork:\n  allow_cidrs:\n    - 10.0.0.0/8\n    - \"::ffff:10.0.0.0/104\"\n", 5, "network.allow_cidrs[1]", "=10.0.0.0/8 already listed at line 4"},
		{"cidr in allow and deny", "version: 1\nnetwork:\n  deny_ports: [22]\n  allow_cidrs:\n    - 10.0.0.0/8\n  deny_cidrs:\n    - 192.168.0.0/16\n    - 10.0.0.0/8\n", 8, "network.deny_cidrs[1]", "=10.0.0.0/8 is in both allow_cidrs (line 5) and deny_cidrs"},
		{"cidr in deny then allow", "version: 1\nnetwork:\n  deny_cidrs: [\"2001:db8::/32\"]\n  allow_cidrs: [\"2001:db8::/32\"]\n", 3, "network.deny_cidrs[0]", "=2001:db8::/32 is in both allow_cidrs (line 4) and deny_cidrs"},

		// files.deny.
		{"path relative", "version: 1\nfiles:\n  deny: [etc/shadow]\n", 3, "files.deny[0]", "=path \"etc/shadow\" is not absolute"},
		{"path empty", "version: 1\nfiles:\n  deny: [\"\"]\n", 3, "files.deny[0]", "=path is empty"},
		{"path NUL", "version: 1\nfiles:\n  deny:\n    - path: \"/etc/sha\\0dow\"\n", 4, "files.deny[0].path", "=path \"/etc/sha\\x00dow\" contains a control character"},
		{"path newline", "version: 1\nfiles:\n  deny: [\"/etc/a\\nb\"]\n", 3, "files.deny[0]", "=path \"/etc/a\\nb\" contains a control character"},
		{"path tab", "version: 1\nfiles:\n  deny: [\"/etc/a\\tb\"]\n", 3, "files.deny[0]", "=path \"/etc/a\\tb\" contains a control character"},
		{"path DEL", "version: 1\nfiles:\n  deny: [\"/etc/a\\x7fb\"]\n", 3, "files.deny[0]", "=path \"/etc/a\\x7fb\" contains a control character"},
		{"path C1 control", "version: 1\nfiles:\n  deny: [\"/etc/a\\Nb\"]\n", 3, "files.deny[0]", "=path \"/etc/a\\u0085b\" contains a control character"},
		{"path dotdot", "version: 1\nfiles:\n  deny: [/a/../b]\n", 3, "files.deny[0]", "=path /a/../b is not clean; write /b"},
		{"path dot", "version: 1\nfiles:\n  deny: [/a/./b/]\n", 3, "files.deny[0]", "=path /a/./b/ is not clean; write /a/b/"},
		{"path double slash", "version: 1\nfiles:\n  deny: [{path: /a//b, id: 3}]\n", 3, "files.deny[0].path", "=path /a//b is not clean; write /a/b"},
		{"path two trailing slashes", "version: 1\nfiles:\n  deny: [/a//]\n", 3, "files.deny[0]", "=path /a// is not clean; write /a/"},
		{"path double root", "version: 1\nfiles:\n  deny: [//]\n", 3, "files.deny[0]", "=path // is not clean; write /"},
		{"path trailing dot", "version: 1\nfiles:\n  deny: [/a/.]\n", 3, "files.deny[0]", "=path /a/. is not clean; write /a"},
		{"path too long", "version: 1\nfiles:\n  deny: [/" + strings.Repeat("a", MaxPathLen) + "]\n", 3, "files.deny[0]", "=path is 4097 bytes long; the limit is 4096"},
		{"path int", "version: 1\nfiles:\n  deny: [42]\n", 3, "files.deny[0]", "=expected a path string, got the integer \"42\""},
		{"path mapping missing", "version: 1\nfiles:\n  deny:\n    - id: 3\n", 4, "files.deny[0].path", "=required field missing"},
		{"path duplicate", "version: 1\nfiles:\n  deny:\n    - /etc/shadow\n    - {path: /etc/shadow, id: 4}\n", 5, "files.deny[1].path", "=path /etc/shadow already listed at line 4"},
		{"path duplicate dir and file", "version: 1\nfiles:\n  deny:\n    - /root/\n    - /root\n", 5, "files.deny[1]", "=path /root already listed at line 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.in))
			if p != nil {
				t.Errorf("got a policy (%s), want nil", p.Summary())
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.msg)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			if pe.File != "p.yaml" || pe.Line != tt.line || pe.Field != tt.field {
				t.Errorf("error %q: got file %q line %d field %q, want p.yaml line %d field %q", err, pe.File, pe.Line, pe.Field, tt.line, tt.field)
			}
			if exact, ok := strings.CutPrefix(tt.msg, "="); ok {
				if pe.Msg != exact {
					t.Errorf("error %q: got Msg %q, want %q", err, pe.Msg, exact)
				}
			} else if !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("error %q: Msg does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	_, err := Parse("p.yaml", []byte("version: 1\nnetwork:\n  deny_ports: [22,\n    23,\n    {port: 70000}]\n"))
	const want = "p.yaml:5: network.deny_ports[2].port: 70000 is outside 1-65535"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "p.yaml", Msg: "empty policy"}, "p.yaml: empty policy"},
		{Error{File: "p.yaml", Line: 3, Msg: "invalid YAML: x"}, "p.yaml:3: invalid YAML: x"},
		{Error{Line: 3, Field: "mode", Msg: "m"}, "line 3: mode: m"},
		{Error{Field: "mode", Msg: "m"}, "mode: m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestParseTooLarge(t *testing.T) {
	data := make([]byte, MaxPolicyBytes+1)
	p, err := Parse("big.yaml", data)
	var pe *Error
	if p != nil || !errors.As(err, &pe) || pe.Line != 0 || pe.File != "big.yaml" || !strings.Contains(pe.Msg, "larger than") {
		t.Errorf("got %v, %v; want a size *Error", p, err)
	}
}

func TestSpecPolicy(t *testing.T) {
	p := mustParse(t, specPolicy)
	if p.File != "p.yaml" || p.Version != 1 || p.Mode != ModeEnforce {
		t.Errorf("header: %+v", p)
	}
	wantPorts := []PortRule{{1, 22, 4}, {2, 23, 4}, {40, 5432, 4}}
	if !reflect.DeepEqual(p.DenyPorts, wantPorts) {
		t.Errorf("DenyPorts = %+v, want %+v", p.DenyPorts, wantPorts)
	}
	// ids: ports 22 -> 1, 23 -> 2; deny_cidrs fd00::/8 -> 3; allow 10/8 -> 4,
	// 2001:db8::/32 -> 5; files .ssh -> 6 (7 is explicit).
	wantDeny := []CIDRRule{
		{41, netip.MustParsePrefix("169.254.169.254/32"), 6},
		{3, netip.MustParsePrefix("fd00::/8"), 6},
	}
	if !reflect.DeepEqual(p.DenyCIDRs, wantDeny) {
		t.Errorf("DenyCIDRs = %+v, want %+v", p.DenyCIDRs, wantDeny)
	}
	wantAllow := []CIDRRule{
		{4, netip.MustParsePrefix("10.0.0.0/8"), 5},
		{5, netip.MustParsePrefix("2001:db8::/32"), 5},
	}
	if !reflect.DeepEqual(p.AllowCIDRs, wantAllow) {
		t.Errorf("AllowCIDRs = %+v, want %+v", p.AllowCIDRs, wantAllow)
	}
	wantFiles := []FileRule{
		{7, "/var/lib/private-demo/credentials.txt", false, 0, 9},
		{6, "/home/agent/.ssh", true, 0, 10},
	}
	if !reflect.DeepEqual(p.FileDeny, wantFiles) {
		t.Errorf("FileDeny = %+v, want %+v", p.FileDeny, wantFiles)
	}
	sum := sha256.Sum256([]byte(specPolicy))
	if p.Digest != hex.EncodeToString(sum[:]) {
		t.Errorf("Digest = %s", p.Digest)
	}
	if !p.HasFileRules() || !p.HasNetworkRules() {
		t.Errorf("HasFileRules %v HasNetworkRules %v, want true true", p.HasFileRules(), p.HasNetworkRules())
	}
	if got, want := p.Summary(), "3 port, 2 allow CIDR, 2 deny CIDR, 2 file rules, mode enforce"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}

	wantRules := []Rule{
		{1, KindDenyPort, "22", 4},
		{2, KindDenyPort, "23", 4},
		{3, KindDenyCIDR, "fd00::/8", 6},
		{4, KindAllowCIDR, "10.0.0.0/8", 5},
		{5, KindAllowCIDR, "2001:db8::/32", 5},
		{6, KindDenyPath, "/home/agent/.ssh/", 10},
		{7, KindDenyPath, "/var/lib/private-demo/credentials.txt", 9},
		{40, KindDenyPort, "5432", 4},
		{41, KindDenyCIDR, "169.254.169.254/32", 6},
		{NotInAllowCIDRsID, "not_in_allow_cidrs", "destination outside allow_cidrs", 0},
	}
	if got := p.Rules(); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("Rules =\n%+v\nwant\n%+v", got, wantRules)
	}
	for _, r := range wantRules {
		got, ok := p.RuleByID(r.ID)
		if !ok || got != r {
			t.Errorf("RuleByID(%d) = %+v, %v; want %+v", r.ID, got, ok, r)
		}
	}
	for _, id := range []uint32{0, 8, 39, 999999, NotInAllowCIDRsID + 1} {
		if r, ok := p.RuleByID(id); ok {
			t.Errorf("RuleByID(%d) = %+v, want none", id, r)
		}
	}
}

func TestDefaults(t *testing.T) {
	p := mustParse(t, "version: 1\n")
	if p.Mode != ModeEnforce || p.HasFileRules() || p.HasNetworkRules() || len(p.Rules()) != 0 {
		t.Errorf("minimal policy: %+v rules %v", p, p.Rules())
	}
	if got, want := p.Summary(), "0 port, 0 allow CIDR, 0 deny CIDR, 0 file rules, mode enforce"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if p.DenyPorts != nil || p.AllowCIDRs != nil || p.DenyCIDRs != nil || p.FileDeny != nil {
		t.Errorf("absent sections should leave nil slices: %+v", p)
	}

	p = mustParse(t, "version: 1\nmode: audit\nfiles:\n  deny: [/etc/shadow]\n")
	if p.Mode != ModeAudit || p.HasNetworkRules() || !p.HasFileRules() {
		t.Errorf("audit policy: %+v", p)
	}
	if got, want := p.Summary(), "0 port, 0 allow CIDR, 0 deny CIDR, 1 file rule, mode audit"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if p := mustParse(t, "version: 1\nmode: enforce\n"); p.Mode != ModeEnforce {
		t.Errorf("mode enforce: %v", p.Mode)
	}

	// Empty and null sections and lists are fine.
	for _, in := range []string{
		"version: 1\nnetwork:\nfiles:\n",
		"version: 1\nnetwork: {}\nfiles: {}\n",
		"version: 1\nnetwork:\n  deny_ports: []\n  allow_cidrs: []\n  deny_cidrs: []\nfiles:\n  deny: []\n",
		"version: 1\nnetwork:\n  deny_ports:\n  allow_cidrs:\n  deny_cidrs:\nfiles:\n  deny:\n",
		"{version: 1}",
		"---\nversion: 1\n...\n",
		"\"version\": 1\n",
		"version: !!int 1\n",
	} {
		p := mustParse(t, in)
		if p.HasNetworkRules() || p.HasFileRules() || len(p.Rules()) != 0 {
			t.Errorf("%q: want no rules, got %+v", in, p)
		}
	}
}

func TestModeString(t *testing.T) {
	if ModeEnforce.String() != "enforce" || ModeAudit.String() != "audit" || Mode(7).String() != "Mode(7)" {
		t.Errorf("Mode strings: %s %s %s", ModeEnforce, ModeAudit, Mode(7))
	}
}

func ids(p *Policy) map[string]uint32 {
	m := map[string]uint32{}
	for _, r := range p.Rules() {
		m[r.Kind+" "+r.Detail] = r.ID
	}
	return m
}

func TestIDAssignment(t *testing.T) {
	// Explicit ids 1, 3 and 4 are skipped; assignment order is deny_ports,
	// deny_cidrs, allow_cidrs, files.deny regardless of document order.
	const in = `version: 1
files:
  deny:
    - /a
    - {path: /b, id: 1}
    - /c/
network:
  allow_cidrs: [10.0.0.0/8]
  deny_cidrs: [192.168.0.0/16, {cidr: 172.16.0.0/12, id: 4}]
  deny_ports: [80, {port: 443, id: 3}, 8080]
`
	p := mustParse(t, in)
	want := map[string]uint32{
		"deny_port 80":             2,
		"deny_port 443":            3,
		"deny_port 8080":           5,
		"deny_cidr 192.168.0.0/16": 6,
		"deny_cidr 172.16.0.0/12":  4,
		"allow_cidr 10.0.0.0/8":    7,
		"deny_path /a":             8,
		"deny_path /b":             1,
		"deny_path /c/":            9,
		"not_in_allow_cidrs destination outside allow_cidrs": NotInAllowCIDRsID,
	}
	if got := ids(p); !reflect.DeepEqual(got, want) {
		t.Errorf("ids =\n%v\nwant\n%v", got, want)
	}

	// Stable: the same text gives the same policy, ids included.
	p2 := mustParse(t, in)
	if !reflect.DeepEqual(p, p2) {
		t.Errorf("two parses differ:\n%+v\n%+v", p, p2)
	}

	// Ids go up to MaxUserID.
	p = mustParse(t, "version: 1\nnetwork:\n  deny_ports: [{port: 1, id: 999999}, 2]\n")
	if p.DenyPorts[0].ID != MaxUserID || p.DenyPorts[1].ID != 1 {
		t.Errorf("ids: %+v", p.DenyPorts)
	}
}

func TestIDExhaustion(t *testing.T) {
	// Parsing a million rules is slow, so drive assignIDs directly.
	ps := &parser{file: "p.yaml", ids: map[uint32]int{}}
	for id := uint32(1); id <= MaxUserID; id++ {
		ps.ids[id] = 3
	}
	pol := &Policy{FileDeny: []FileRule{{Path: "/x", Line: 9}}}
	err := ps.assignIDs(pol)
	if err == nil || err.Line != 9 || err.Field != "files.deny[0]" || !strings.Contains(err.Msg, "too many rules") {
		t.Errorf("got %v, want a too-many-rules error", err)
	}
}

func TestCIDRNormalisation(t *testing.T) {
	tests := []struct {
		in   string
		want string
		is4  bool
	}{
		{"192.0.2.1", "192.0.2.1/32", true},
		{"2001:db8::1", "2001:db8::1/128", false},
		{"10.0.0.0/8", "10.0.0.0/8", true},
		{"0.0.0.0/0", "0.0.0.0/0", true},
		{"::/0", "::/0", false},
		{"2001:DB8::/32", "2001:db8::/32", false},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", true},
		{"::ffff:192.0.2.1", "192.0.2.1/32", true},
		{"::ffff:c000:201/128", "192.0.2.1/32", true},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p := mustParse(t, "version: 1\nnetwork:\n  deny_cidrs: [\""+tt.in+"\"]\n")
			got := p.DenyCIDRs[0].Prefix
			if got.String() != tt.want || got.Addr().Is4() != tt.is4 || got != got.Masked() || got.Addr().Is4In6() {
				t.Errorf("got %v (Is4 %v), want %s (Is4 %v)", got, got.Addr().Is4(), tt.want, tt.is4)
			}
		})
	}
	// A prefix shorter than /96 cannot be a mapped one (the ffff bits would
	// be host bits); it stays IPv6.
	p := mustParse(t, "version: 1\nnetwork:\n  allow_cidrs: [\"::/80\"]\n")
	if got := p.AllowCIDRs[0].Prefix; got.Addr().Is4() || got.String() != "::/80" {
		t.Errorf("::/80 -> %v", got)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		in      string
		path    string
		wantDir bool
	}{
		{"/etc/shadow", "/etc/shadow", false},
		{"/home/agent/.ssh/", "/home/agent/.ssh", true},
		{"/", "/", true},
		{"/a b/c", "/a b/c", false},
		{"/héllo/wörld", "/héllo/wörld", false},
		{"/..a/b..", "/..a/b..", false},
		{"/" + strings.Repeat("a", MaxPathLen-1), "/" + strings.Repeat("a", MaxPathLen-1), false},
	}
	for _, tt := range tests {
		p := mustParse(t, "version: 1\nfiles:\n  deny: [\""+tt.in+"\"]\n")
		if got := p.FileDeny[0]; got.Path != tt.path || got.WantDir != tt.wantDir {
			t.Errorf("%q: got %+v, want path %q dir %v", tt.in, got, tt.path, tt.wantDir)
		}
	}
}

func TestExample(t *testing.T) {
	p, err := Parse("example.yaml", Example())
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || p.HasFileRules() || len(p.AllowCIDRs) != 0 {
		t.Errorf("example: %+v", p)
	}
	want := []Rule{
		{1, KindDenyPort, "22", p.DenyPorts[0].Line},
		{2, KindDenyPort, "23", p.DenyPorts[1].Line},
		{3, KindDenyPort, "25", p.DenyPorts[2].Line},
		{10, KindDenyCIDR, "169.254.169.254/32", p.DenyCIDRs[0].Line},
		{11, KindDenyCIDR, "fd00:ec2::254/128", p.DenyCIDRs[1].Line},
	}
	if got := p.Rules(); !reflect.DeepEqual(got, want) {
		t.Errorf("example rules = %+v, want %+v", got, want)
	}
	// Example returns a copy.
	e := Example()
	e[0] = 'X'
	if Example()[0] == 'X' {
		t.Error("Example returned the embedded slice")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(name, []byte(specPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Parse(name, []byte(specPolicy))
	if !reflect.DeepEqual(p, want) || p.File != name {
		t.Errorf("Load = %+v, want %+v", p, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nmode: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = Load(bad)
	var pe *Error
	if p != nil || !errors.As(err, &pe) || pe.File != bad || pe.Line != 2 || pe.Field != "mode" {
		t.Errorf("Load(bad) = %v, %v", p, err)
	}

	if p, err := Load(filepath.Join(dir, "missing.yaml")); p != nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, %v; want ErrNotExist", p, err)
	}

	// A sparse file just over the limit is rejected without parsing.
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxPolicyBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p, err = Load(big)
	if p != nil || !errors.As(err, &pe) || pe.File != big || !strings.Contains(pe.Msg, "larger than") {
		t.Errorf("Load(big) = %v, %v", p, err)
	}
}

func TestEffectiveMode(t *testing.T) {
	enforce, audit := &Policy{Mode: ModeEnforce}, &Policy{Mode: ModeAudit}
	for _, c := range []struct {
		p    *Policy
		flag bool
		want Mode
	}{
		{enforce, false, ModeEnforce},
		{enforce, true, ModeAudit},
		{audit, false, ModeAudit},
		{audit, true, ModeAudit},
		{nil, false, ModeEnforce},
		{nil, true, ModeAudit},
	} {
		if got := EffectiveMode(c.p, c.flag); got != c.want {
			t.Errorf("EffectiveMode(%+v, %v) = %v, want %v", c.p, c.flag, got, c.want)
		}
	}
}

// TestCheckPath checks the exported path check on its own (the parser
// tests above check it through files.deny): the clean form, the trailing
// slash, and a *PathError whose Reason leaves the path out.
func TestCheckPath(t *testing.T) {
	for _, c := range []struct {
		in      string
		clean   string
		wantDir bool
	}{
		{"/", "/", true},
		{"/etc/shadow", "/etc/shadow", false},
		{"/home/agent/.ssh/", "/home/agent/.ssh", true},
	} {
		clean, dir, err := CheckPath(c.in)
		if err != nil || clean != c.clean || dir != c.wantDir {
			t.Errorf("CheckPath(%q) = %q, %v, %v; want %q, %v, nil", c.in, clean, dir, err, c.clean, c.wantDir)
		}
	}
	for _, c := range []struct{ in, msg, reason string }{
		{"", "path is empty", "is empty"},
		{"etc", `path "etc" is not absolute`, "is not absolute"},
		{"/a/../b/", "path /a/../b/ is not clean; write /b/", "is not clean; write /b/"},
		{"/a\x00", `path "/a\x00" contains a control character`, "contains a control character"},
	} {
		_, _, err := CheckPath(c.in)
		var pe *PathError
		if !errors.As(err, &pe) || err.Error() != c.msg || pe.Reason != c.reason || pe.Path != c.in {
			t.Errorf("CheckPath(%q) error = %#v (%v); want %q with reason %q", c.in, err, err, c.msg, c.reason)
		}
	}
}
