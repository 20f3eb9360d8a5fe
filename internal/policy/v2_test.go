package policy

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// v2Policy is the example.
const v2Policy = `version: 2
mode: enforce
files:
  default: deny
  baseline: runtime
  allow:
    - {path: /home/agent/projects/, access: rw, id: 10}
    - {path: /opt/node/, access: rx}
    - /srv/data/
  deny:
    - {path: /home/agent/projects/.env, id: 11}
network:
  default: deny
  allow:
    - {cidr: 10.0.0.0/8, ports: [5432], proto: tcp, id: 20}
    - {cidr: "2001:db8::/32"}
  deny:
    - {port: 22, id: 21}
    - {cidr: 169.254.169.254/32}
`

// checkV2 holds the invariants of every parsed version 2 policy (also run
// by FuzzParse).
func checkV2(t *testing.T, p *Policy) {
	t.Helper()
	want := len(p.NetAllow) + len(p.NetDeny) + len(p.FileAllow) + len(p.FileDeny) + len(p.ToolDeny) + len(p.ToolAllow)
	if p.ToolAllowList {
		want++
	}
	if p.NetworkSet && p.NetDefault == DefaultDeny {
		want++
	}
	if p.FilesSet && p.FileDefault == DefaultDeny {
		want++
	}
	if p.HasHosts() {
		want++ // dns_default
	}
	if p.DNS.Set && !p.HasHosts() {
		t.Fatalf("dns section without host entries")
	}
	if got := len(p.Rules()); got != want {
		t.Fatalf("%d rules, want %d", got, want)
	}
	if len(p.DenyPorts)+len(p.AllowCIDRs)+len(p.DenyCIDRs) != 0 {
		t.Fatalf("version 2 policy has version 1 network rules: %+v", p)
	}
	if p.NetDefault == DefaultAllow && len(p.NetAllow) > 0 {
		t.Fatalf("allow entries under default allow: %+v", p.NetAllow)
	}
	if p.Baseline == BaselineRuntime && p.FileDefault != DefaultDeny {
		t.Fatalf("baseline runtime with default allow")
	}
	for _, r := range p.FileAllow {
		if r.Access == 0 || r.Access&^AccessAll != 0 {
			t.Fatalf("bad access %+v", r)
		}
	}
	for _, r := range p.FileDeny {
		if r.Access != 0 {
			t.Fatalf("deny rule with access %+v", r)
		}
	}
	for _, list := range [][]NetRule{p.NetAllow, p.NetDeny} {
		for _, r := range list {
			if r.Host != "" {
				if r.AnyAddr || r.Prefix.IsValid() || p.NetDefault != DefaultDeny {
					t.Fatalf("host entry with an address or under default allow: %+v", r)
				}
				if h, msg := CheckHost(r.Host); msg != "" || h != r.Host {
					t.Fatalf("host %q not normalised: %q %s", r.Host, h, msg)
				}
				continue
			}
			if r.AnyAddr == r.Prefix.IsValid() {
				t.Fatalf("AnyAddr and Prefix disagree: %+v", r)
			}
			if r.Prefix.IsValid() && (r.Prefix != r.Prefix.Masked() || r.Prefix.Addr().Is4In6()) {
				t.Fatalf("bad prefix %+v", r)
			}
			if r.AnyAddr && r.Ports == nil && r.Proto == ProtoAny {
				t.Fatalf("entry matching everything %+v", r)
			}
			for i, port := range r.Ports {
				if port == 0 || (i > 0 && r.Ports[i-1] >= port) {
					t.Fatalf("ports not sorted and unique: %+v", r)
				}
			}
		}
	}
}

func TestParseV2(t *testing.T) {
	p, err := Parse("p.yaml", []byte(v2Policy))
	if err != nil {
		t.Fatal(err)
	}
	checkV2(t, p)
	if p.Version != 2 || p.FileDefault != DefaultDeny || p.Baseline != BaselineRuntime || p.NetDefault != DefaultDeny {
		t.Fatalf("header %+v", p)
	}
	wantAllow := []FileRule{
		{ID: 10, Path: "/home/agent/projects", WantDir: true, Access: AccessRead | AccessWrite, Line: 7},
		{ID: 3, Path: "/opt/node", WantDir: true, Access: AccessRead | AccessExec, Line: 8},
		{ID: 4, Path: "/srv/data", WantDir: true, Access: AccessRead, Line: 9},
	}
	// Ids are assigned visiting network.deny, network.allow, files.deny, files.allow.
	if !reflect.DeepEqual(p.FileAllow, wantAllow) {
		t.Errorf("FileAllow = %+v\nwant %+v", p.FileAllow, wantAllow)
	}
	wantDeny := []FileRule{{ID: 11, Path: "/home/agent/projects/.env", Line: 11}}
	if !reflect.DeepEqual(p.FileDeny, wantDeny) {
		t.Errorf("FileDeny = %+v", p.FileDeny)
	}
	wantNetAllow := []NetRule{
		{ID: 20, Prefix: netip.MustParsePrefix("10.0.0.0/8"), Ports: []uint16{5432}, Proto: ProtoTCP, Line: 15},
		{ID: 2, Prefix: netip.MustParsePrefix("2001:db8::/32"), Line: 16},
	}
	if !reflect.DeepEqual(p.NetAllow, wantNetAllow) {
		t.Errorf("NetAllow = %+v", p.NetAllow)
	}
	wantNetDeny := []NetRule{
		{ID: 21, AnyAddr: true, Ports: []uint16{22}, Line: 18},
		{ID: 1, Prefix: netip.MustParsePrefix("169.254.169.254/32"), Line: 19},
	}
	if !reflect.DeepEqual(p.NetDeny, wantNetDeny) {
		t.Errorf("NetDeny = %+v", p.NetDeny)
	}
	if r, ok := p.RuleByID(NotInAllowCIDRsID); !ok || r.Kind != KindNetworkDefault {
		t.Errorf("RuleByID(network default) = %+v, %v", r, ok)
	}
	if r, ok := p.RuleByID(FilesDefaultID); !ok || r.Kind != KindFilesDefault {
		t.Errorf("RuleByID(files default) = %+v, %v", r, ok)
	}
	if r, ok := p.RuleByID(3); !ok || r.Kind != KindAllowPath || r.Detail != "/opt/node/ (rx)" {
		t.Errorf("RuleByID(3) = %+v, %v", r, ok)
	}
	if !p.HasFileRules() || !p.HasNetworkRules() {
		t.Error("HasFileRules/HasNetworkRules false")
	}
	if s := p.Summary(); !strings.Contains(s, "files: default deny, baseline runtime, 3 allow, 1 deny") || !strings.Contains(s, "network: default deny, 2 allow, 2 deny") {
		t.Errorf("Summary = %q", s)
	}
}

// Tool rules (mcp) are shared by both versions.
func TestV2ToolRules(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 2\nnetwork: {default: deny, deny: [{port: 22}]}\nmcp:\n  tools:\n    allow: [read_file, {tool: \"list_*\", id: 9}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkV2(t, p)
	if len(p.ToolAllow) != 2 || !p.ToolAllowList {
		t.Fatalf("tool rules %+v", p.ToolAllow)
	}
	for _, r := range p.Rules() {
		if got, ok := p.RuleByID(r.ID); !ok || got != r {
			t.Errorf("RuleByID(%d) = %+v, %v; want %+v", r.ID, got, ok, r)
		}
	}
	if r, ok := p.RuleByID(NotInAllowToolsID); !ok || r.ID != NotInAllowToolsID {
		t.Errorf("RuleByID(tools) = %+v, %v", r, ok)
	}
	if !strings.Contains(p.Summary(), "2 tool rules") {
		t.Errorf("Summary = %q", p.Summary())
	}
}

func TestV2Defaults(t *testing.T) {
	for _, tc := range []struct {
		text         string
		files        bool
		fileDefault  Default
		baseline     Baseline
		hasFileRules bool
	}{
		{"version: 2\n", false, DefaultAllow, BaselineNone, false},
		{"version: 2\nfiles: {default: deny}\n", true, DefaultDeny, BaselineRuntime, true},
		{"version: 2\nfiles: {default: deny, baseline: none}\n", true, DefaultDeny, BaselineNone, true},
		{"version: 2\nfiles: {default: allow}\n", true, DefaultAllow, BaselineNone, false},
		{"version: 2\nfiles: {default: allow, baseline: none, deny: [/x]}\n", true, DefaultAllow, BaselineNone, true},
	} {
		p, err := Parse("p.yaml", []byte(tc.text))
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		checkV2(t, p)
		if p.FilesSet != tc.files || p.FileDefault != tc.fileDefault || p.Baseline != tc.baseline || p.HasFileRules() != tc.hasFileRules {
			t.Errorf("%q: %+v", tc.text, p)
		}
	}
}

func TestParseV2Errors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		field, msg string
	}{
		{"files without default", "version: 2\nfiles:\n  allow: [/x]\n", 3, "files.default", "required field missing"},
		{"empty files", "version: 2\nfiles:\n", 2, "files.default", "required field missing"},
		{"bad default", "version: 2\nfiles: {default: maybe}\n", 2, "files.default", "unknown default \"maybe\""},
		{"bad baseline", "version: 2\nfiles: {default: deny, baseline: all}\n", 2, "files.baseline", "unknown baseline \"all\""},
		{"baseline with allow", "version: 2\nfiles:\n  default: allow\n  baseline: runtime\n", 4, "files.baseline", "only applies with default: deny"},
		{"bad access", "version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /x, access: rwr}\n", 5, "files.allow[0].access", "access \"rwr\""},
		{"access letters", "version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /x, access: read}\n", 5, "files.allow[0].access", "combination of r, w and x"},
		{"access number", "version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /x, access: 7}\n", 5, "files.allow[0].access", "expected r, w, x"},
		{"empty access", "version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /x, access: \"\"}\n", 5, "files.allow[0].access", "access \"\""},
		{"access on deny", "version: 2\nfiles:\n  default: allow\n  deny:\n    - {path: /x, access: r}\n", 5, "files.deny[0].access", "unknown field \"access\""},
		{"same path allow and deny", "version: 2\nfiles:\n  default: deny\n  allow: [/x/]\n  deny: [/x]\n", 5, "files.deny[0]", "already has a rule at line 4"},
		{"relative path", "version: 2\nfiles:\n  default: deny\n  allow: [x/]\n", 4, "files.allow[0]", "not absolute"},
		{"unclean path", "version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /a/../b, access: r}\n", 5, "files.allow[0].path", "not clean"},
		{"missing path", "version: 2\nfiles:\n  default: deny\n  allow:\n    - {access: r}\n", 5, "files.allow[0].path", "required field missing"},
		{"v1 field in v2", "version: 2\nnetwork:\n  default: deny\n  deny_ports: [22]\n", 4, "network.deny_ports", "unknown field"},
		{"network without default", "version: 2\nnetwork:\n  deny: [{port: 22}]\n", 3, "network.default", "required field missing"},
		{"allow with default allow", "version: 2\nnetwork:\n  default: allow\n  allow: [10.0.0.0/8]\n", 4, "network.allow", "no effect with default: allow"},
		{"port and ports", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {port: 1, ports: [2]}\n", 5, "network.allow[0].ports", "either port or ports"},
		{"empty ports", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {cidr: 10.0.0.0/8, ports: []}\n", 5, "network.allow[0].ports", "empty list"},
		{"port zero", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {ports: [80, 0]}\n", 5, "network.allow[0].ports[1]", "0 is outside 1-65535"},
		{"port twice", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {ports: [80, 80]}\n", 5, "network.allow[0].ports[1]", "port 80 already listed"},
		{"quoted port", "version: 2\nnetwork:\n  default: deny\n  deny:\n    - {port: \"22\"}\n", 5, "network.deny[0].port", "expected an integer"},
		{"bad proto", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {ports: [53], proto: icmp}\n", 5, "network.allow[0].proto", "unknown protocol \"icmp\""},
		{"everything entry", "version: 2\nnetwork:\n  default: allow\n  deny:\n    - {id: 5}\n", 5, "network.deny[0]", "needs cidr, port or ports"},
		{"host bits", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {cidr: 10.0.0.1/8}\n", 5, "network.allow[0].cidr", "host bits set"},
		{"duplicate entry", "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {cidr: 10.0.0.0/8, ports: [2, 1]}\n    - {cidr: 10.0.0.0/8, ports: [1, 2], id: 4}\n", 6, "network.allow[1]", "already listed at line 5"},
		{"in both lists", "version: 2\nnetwork:\n  default: deny\n  allow: [10.0.0.0/8]\n  deny: [\"10.0.0.0/8\"]\n", 5, "network.deny[0]", "in both allow (line 4) and deny"},
		{"duplicate id across sections", "version: 2\nnetwork:\n  default: allow\n  deny: [{port: 22, id: 7}]\nfiles:\n  default: allow\n  deny: [{path: /x, id: 7}]\n", 7, "files.deny[0].id", "id 7 already used at line 4"},
		{"reserved id", "version: 2\nfiles:\n  default: deny\n  allow: [{path: /x, id: 1000002}]\n", 4, "files.allow[0].id", "outside 1-999999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tc.text))
			if err == nil {
				t.Fatalf("no error; policy %+v", p)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v", err, err)
			}
			if pe.File != "p.yaml" || pe.Line != tc.line || pe.Field != tc.field || !strings.Contains(pe.Msg, tc.msg) {
				t.Errorf("error %q: want line %d field %q msg containing %q", err, tc.line, tc.field, tc.msg)
			}
		})
	}
}

func TestVersion1Unchanged(t *testing.T) {
	p, err := Parse("p.yaml", []byte(specPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.FilesSet || p.NetworkSet || p.FileDefault != DefaultAllow || p.Baseline != BaselineNone || p.FileAllow != nil {
		t.Fatalf("version 1 policy got version 2 settings: %+v", p)
	}
	for _, r := range p.FileRules() {
		if r.Access != 0 {
			t.Fatalf("version 1 rule with access: %+v", r)
		}
	}
	// Every path outside the denied ones is fully allowed, as before.
	if d := p.FileAccess("/etc/passwd"); d.Access != AccessAll {
		t.Errorf("FileAccess(/etc/passwd) = %+v", d)
	}
	if d := p.FileAccess("/home/agent/.ssh/id_ed25519"); d.Access != 0 || d.Rule.ID != 6 {
		t.Errorf("FileAccess(.ssh key) = %+v", d)
	}
}

func TestFileAccessNearestRuleWins(t *testing.T) {
	text := `version: 2
files:
  default: deny
  baseline: none
  allow:
    - {path: /p/, access: rw, id: 1}
    - {path: /p/secret/open/, access: r, id: 2}
    - {path: /p/bin/, access: rx, id: 3}
    - {path: /p/bin/tool, access: r, id: 4}
  deny:
    - {path: /p/.env, id: 5}
    - {path: /p/secret/, id: 6}
`
	p, err := Parse("p.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		acc  Access
		id   uint32
	}{
		{"/p", AccessRead | AccessWrite, 1},
		{"/p/a/b/c.txt", AccessRead | AccessWrite, 1},
		{"/p/.env", 0, 5},
		{"/p/.envx", AccessRead | AccessWrite, 1},
		{"/p/secret", 0, 6},
		{"/p/secret/key", 0, 6},
		{"/p/secret/open", AccessRead, 2},
		{"/p/secret/open/x", AccessRead, 2},
		{"/p/secret/opener", 0, 6},
		{"/p/bin/x", AccessRead | AccessExec, 3},
		{"/p/bin/tool", AccessRead, 4},
		{"/", 0, FilesDefaultID},
		{"/etc/passwd", 0, FilesDefaultID},
		{"/pp", 0, FilesDefaultID},
	} {
		d := p.FileAccess(tc.path)
		if d.Access != tc.acc || d.Rule.ID != tc.id {
			t.Errorf("FileAccess(%s) = %v by %+v; want %v by rule %d", tc.path, d.Access, d.Rule, tc.acc, tc.id)
		}
	}
}

func TestNetVerdict(t *testing.T) {
	p, err := Parse("p.yaml", []byte(v2Policy))
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		addr    string
		port    uint16
		proto   Proto
		allowed bool
		id      uint32
	}{
		{"10.1.2.3", 5432, ProtoTCP, true, 20},
		{"10.1.2.3", 5432, ProtoUDP, false, NotInAllowCIDRsID},
		{"10.1.2.3", 5433, ProtoTCP, false, NotInAllowCIDRsID},
		{"::ffff:10.1.2.3", 5432, ProtoTCP, true, 20},
		{"2001:db8::1", 22, ProtoTCP, false, 21},
		{"2001:db8::1", 443, ProtoUDP, true, 2},
		{"169.254.169.254", 80, ProtoTCP, false, 1},
		{"127.0.0.1", 80, ProtoTCP, false, NotInAllowCIDRsID},
	} {
		d := p.NetVerdict(a(tc.addr), tc.port, tc.proto)
		if d.Allowed != tc.allowed || d.Rule.ID != tc.id {
			t.Errorf("NetVerdict(%s, %d, %v) = %+v; want allowed %v by %d", tc.addr, tc.port, tc.proto, d, tc.allowed, tc.id)
		}
	}
}

type fakeInfo struct {
	mode fs.FileMode
}

func (f fakeInfo) Name() string       { return "" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

// On this machine: the baseline as resolved. /lib, /bin and /sbin are
// symlinks into /usr on merged-/usr systems (Debian 12): they must not
// appear as their own rules, and what remains must exist.
func TestRuntimeBaselineHere(t *testing.T) {
	es := RuntimeBaselineEntries()
	seen := map[string]bool{}
	var usr bool
	for _, e := range es {
		r := e.Rule
		if seen[r.Path] {
			t.Errorf("%s listed twice", r.Path)
		}
		seen[r.Path] = true
		if r.ID < BaselineFirstID || r.Access == 0 {
			t.Errorf("bad baseline rule %+v", r)
		}
		if r.Path == "/usr" {
			usr = r.Access == AccessRead|AccessExec && r.WantDir
		}
		if r.Path == ProcSelf {
			continue
		}
		fi, err := os.Lstat(r.Path)
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 || fi.IsDir() != r.WantDir {
			t.Errorf("baseline rule %+v: %v %v", r, fi, err)
		}
	}
	if !usr {
		t.Errorf("/usr is not in the baseline as rx: %+v", es)
	}
	if fi, err := os.Lstat("/lib"); err == nil && fi.Mode()&fs.ModeSymlink != 0 && seen["/lib"] {
		t.Errorf("/lib is a symlink but listed: %+v", es)
	}
	p, err := Parse("p.yaml", []byte("version: 2\nfiles: {default: deny}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]Access{
		"/usr/bin/env":     AccessRead | AccessExec,
		"/etc/ld.so.cache": AccessRead,
		"/dev/null":        AccessRead | AccessWrite,
		"/etc/shadow":      0,
		"/root/.ssh/x":     0,
		"/tmp/x":           0,
	} {
		if _, err := os.Stat(path); err != nil && want != 0 {
			continue
		}
		if d := p.FileAccess(path); d.Access != want {
			t.Errorf("baseline FileAccess(%s) = %v (%+v), want %v", path, d.Access, d.Rule, want)
		}
	}
}

// A policy rule on a baseline path replaces the baseline rule.
func TestBaselineOverride(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 2\nfiles:\n  default: deny\n  deny: [{path: /etc/passwd, id: 9}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Skip("no /etc/passwd")
	}
	if d := p.FileAccess("/etc/passwd"); d.Access != 0 || d.Rule.ID != 9 {
		t.Errorf("FileAccess(/etc/passwd) = %+v", d)
	}
}

// The resolution with a made-up merged-/usr machine.
func TestResolveBaselineMergedUsr(t *testing.T) {
	links := map[string]string{"/lib": "/usr/lib", "/bin": "/usr/bin", "/etc/localtime": "/usr/share/zoneinfo/UTC", "/etc/resolv.conf": "/run/resolv.conf"}
	dirs := map[string]bool{"/usr": true, "/etc/ssl": true, "/sys/devices/system/cpu": true}
	files := map[string]bool{"/etc/ld.so.cache": true, "/dev/null": true}
	lstat := func(p string) (fs.FileInfo, error) {
		switch {
		case links[p] != "":
			return fakeInfo{fs.ModeSymlink}, nil
		case dirs[p]:
			return fakeInfo{fs.ModeDir}, nil
		case files[p]:
			return fakeInfo{0}, nil
		}
		return nil, fs.ErrNotExist
	}
	eval := func(p string) (string, error) { return links[p], nil }
	// resolveBaseline stats resolved targets with os.Stat: only check the
	// entries that do not depend on the real machine.
	es := resolveBaseline(lstat, eval)
	got := map[string]Access{}
	for _, e := range es {
		got[e.Rule.Path] = e.Rule.Access
		if e.Rule.Path == "/lib" || e.Rule.Path == "/bin" {
			t.Errorf("symlink kept: %+v", e)
		}
	}
	for p, a := range map[string]Access{"/usr": AccessRead | AccessExec, "/etc/ssl": AccessRead, "/etc/ld.so.cache": AccessRead, "/dev/null": AccessRead | AccessWrite, ProcSelf: AccessRead} {
		if got[p] != a {
			t.Errorf("%s: %v, want %v (all: %v)", p, got[p], a, got)
		}
	}
}
