package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(specPolicy))
	f.Add(Example())
	f.Add([]byte("version: 1\nmode: audit\n"))
	f.Add([]byte("version: 1\nnetwork:\n  deny_ports: [{port: 22, id: 999999}, 23]\n  allow_cidrs: [\"::ffff:10.0.0.0/104\", 192.0.2.1]\n"))
	f.Add([]byte(v2Policy))
	f.Add([]byte("version: 2\nfiles: {default: deny}\nmcp:\n  tools:\n    allow: [read_file, \"list_*\"]\n"))
	f.Add([]byte("version: 2\nfiles: {default: allow, deny: [/x/, {path: /y, id: 3}], allow: [{path: /x/ok/, access: xr}]}\n"))
	f.Add([]byte("version: 2\nnetwork: {default: deny, allow: [{ports: [53, 853], proto: udp}, \"::1\"], deny: [{cidr: 127.0.0.2, port: 9}]}\n"))
	f.Add([]byte("version: 2\nfiles:\n  default: deny\n  baseline: none\n  allow: [/, {path: /etc/, access: w}]\n"))
	f.Add([]byte(dnsPolicy))
	f.Add([]byte("version: 2\nnetwork: {default: deny, allow: [{host: \"*.A.test.\", proto: udp}, {host: b.test, port: 1}]}\ndns: {upstream: [\"::1\", \"[::1]:5353\"], refuse: refused, grace: 0}\n"))
	f.Add([]byte("version: 2\nnetwork: {default: deny, allow: [{host: \"a*.test\"}]}\ndns:\n"))
	// Corpus entries in testdata/fuzz/FuzzParse are added automatically.

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse returned both a policy and an error: %v", err)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			if pe.File != "f.yaml" || pe.Msg == "" || pe.Line < 0 {
				t.Fatalf("malformed error %#v", pe)
			}
			return
		}
		if p == nil {
			t.Fatal("Parse returned neither a policy nor an error")
		}
		if (p.Version != 1 && p.Version != 2) || (p.Mode != ModeEnforce && p.Mode != ModeAudit) || len(p.Digest) != 64 {
			t.Fatalf("bad header %+v", p)
		}

		rules := p.Rules()
		if p.Version == 2 {
			checkV2(t, p)
		} else {
			n := len(p.DenyPorts) + len(p.AllowCIDRs) + len(p.DenyCIDRs) + len(p.FileDeny) + len(p.ToolDeny) + len(p.ToolAllow)
			if len(p.AllowCIDRs) > 0 {
				n++ // not_in_allow_cidrs
			}
			if p.ToolAllowList {
				n++ // not_in_allow_tools
			}
			if len(rules) != n {
				t.Fatalf("%d rules, want %d", len(rules), n)
			}
		}
		seen := map[uint32]bool{}
		for i, r := range rules {
			if seen[r.ID] {
				t.Fatalf("id %d used twice in %+v", r.ID, rules)
			}
			seen[r.ID] = true
			if i > 0 && rules[i-1].ID >= r.ID {
				t.Fatalf("Rules not sorted: %+v", rules)
			}
			if r.ID == 0 || (r.ID > MaxUserID && r.ID != NotInAllowCIDRsID && r.ID != FilesDefaultID && r.ID != NotInAllowToolsID && r.ID != DNSDefaultID) {
				t.Fatalf("bad id in %+v", r)
			}
			if got, ok := p.RuleByID(r.ID); !ok || got != r {
				t.Fatalf("RuleByID(%d) = %+v, %v; want %+v", r.ID, got, ok, r)
			}
		}
		ports := map[uint16]bool{}
		for _, r := range p.DenyPorts {
			if r.Port == 0 || ports[r.Port] {
				t.Fatalf("bad or duplicate port %+v", r)
			}
			ports[r.Port] = true
		}
		for _, list := range [][]CIDRRule{p.AllowCIDRs, p.DenyCIDRs} {
			for _, r := range list {
				if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() || r.Prefix.Addr().Is4In6() || r.Prefix.Addr().Zone() != "" {
					t.Fatalf("bad prefix %+v", r)
				}
			}
		}
		for _, r := range append(append([]FileRule{}, p.FileDeny...), p.FileAllow...) {
			if !strings.HasPrefix(r.Path, "/") || len(r.Path) > MaxPathLen || (r.Path != "/" && strings.HasSuffix(r.Path, "/")) {
				t.Fatalf("bad path %+v", r)
			}
			if _, _, err := CheckPath(r.Path); err != nil {
				t.Fatalf("stored path %q does not validate: %v", r.Path, err)
			}
		}

		// Deterministic: a second parse gives the same policy.
		p2, err := Parse("f.yaml", data)
		if err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("second parse differs: %v\n%+v\n%+v", err, p, p2)
		}
	})
}
