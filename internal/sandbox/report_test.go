package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

const mixedPolicy = `version: 1
network:
  deny_ports: [{port: 22, id: 1}]
  allow_cidrs: [10.0.0.0/8]
files:
  deny:
    - {path: /etc/shadow, id: 7}
    - {path: /root/.ssh/, id: 8}
`

func parse(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	errLSM      = &kernel.FeatureError{Feature: "BPF LSM (load probe program)", Err: fmt.Errorf("load program: %w", unix.EPERM), Fix: "boot with bpf in lsm="}
	errLandlock = fmt.Errorf("landlock unavailable: not enabled at boot: %w", unix.EOPNOTSUPP)
)

func mechanisms(r Report) map[uint32]string {
	m := map[uint32]string{}
	for _, rr := range r.Rules {
		m[rr.ID] = rr.Mechanism
	}
	return m
}

func TestDecide(t *testing.T) {
	p := parse(t, mixedPolicy)
	for _, tc := range []struct {
		name       string
		env        Env
		files      string
		unenforced int
		reason     string
	}{
		{"bpf lsm", Env{LandlockABI: 7}, MechBPFLSM, 0, ""},
		{"bpf lsm audit", Env{Audit: true}, MechBPFLSM, 0, ""},
		{"landlock fallback", Env{BPFLSM: errLSM, LandlockABI: 7}, MechLandlock, 0, "BPF LSM unavailable (EPERM)"},
		{"nothing for files", Env{BPFLSM: errLSM, Landlock: errLandlock}, MechNone, 2, "Landlock unavailable (EOPNOTSUPP)"},
		{"audit without bpf lsm", Env{BPFLSM: errLSM, LandlockABI: 7, Audit: true}, MechNone, 2, "audit mode needs BPF LSM (EPERM)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Decide(p, tc.env)
			if r.Files != tc.files {
				t.Errorf("Files = %q, want %q", r.Files, tc.files)
			}
			m := mechanisms(r)
			for _, id := range []uint32{1, policy.NotInAllowCIDRsID} {
				if m[id] != MechCgroupBPF {
					t.Errorf("rule %d: %q, want cgroup-bpf", id, m[id])
				}
			}
			for _, id := range []uint32{7, 8} {
				if m[id] != tc.files {
					t.Errorf("rule %d: %q, want %q", id, m[id], tc.files)
				}
			}
			if len(r.Rules) != 5 {
				t.Errorf("%d rules reported, want 5 (with the implicit allow_cidrs rule)", len(r.Rules))
			}
			if got := r.Unenforced(); got != tc.unenforced {
				t.Errorf("Unenforced = %d, want %d", got, tc.unenforced)
			}
			err := r.Check(false)
			if (err != nil) != (tc.unenforced > 0) {
				t.Errorf("Check(false) = %v", err)
			}
			if err != nil && !errors.Is(err, ErrDegraded) {
				t.Errorf("Check error %v is not ErrDegraded", err)
			}
			if err := r.Check(true); err != nil {
				t.Errorf("Check(allowDegraded) = %v", err)
			}
			var buf bytes.Buffer
			r.WriteText(&buf, "report:")
			if tc.reason != "" && !strings.Contains(buf.String(), tc.reason) {
				t.Errorf("report lacks %q:\n%s", tc.reason, buf.String())
			}
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if !strings.HasPrefix(line, "assay: ") {
					t.Errorf("line without the assay: prefix: %q", line)
				}
			}
		})
	}
}

func TestDecideNetworkOnly(t *testing.T) {
	p := parse(t, "version: 1\nnetwork:\n  deny_ports: [22]\n")
	r := Decide(p, Env{BPFLSM: errLSM})
	if r.Files != "" || r.Unenforced() != 0 || len(r.Notes) != 0 {
		t.Errorf("network-only policy: %+v", r)
	}
}

// TestDecideHosts: host entries and the dns_default rule are enforced by
// the resolver with the cgroup programs; CIDR entries by the programs.
func TestDecideHosts(t *testing.T) {
	p := parse(t, "version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: a.test, port: 443, id: 3}\n    - {cidr: 10.0.0.0/8, id: 4}\n")
	m := mechanisms(Decide(p, Env{BPFLSM: errLSM}))
	want := map[uint32]string{3: MechResolver, policy.DNSDefaultID: MechResolver, 4: MechCgroupBPF, policy.NotInAllowCIDRsID: MechCgroupBPF}
	for id, mech := range want {
		if m[id] != mech {
			t.Errorf("rule %d: %q, want %q", id, m[id], mech)
		}
	}
}

func TestReportFormats(t *testing.T) {
	r := Decide(parse(t, mixedPolicy), Env{BPFLSM: errLSM, Landlock: errLandlock})
	var text bytes.Buffer
	if err := r.WriteText(&text, "enforcement report:"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"rule 1  ", "deny_port", "cgroup-bpf",
		"rule 7  ", "/etc/shadow", "NOT ENFORCED: BPF LSM unavailable (EPERM) and Landlock unavailable (EOPNOTSUPP)",
		"/root/.ssh/", "assay: bpf-lsm: BPF LSM (load probe program) unavailable",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Type  string
		Files string `json:"files_mechanism"`
		Rules []RuleReport
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, js.String())
	}
	if got.Type != "enforcement" || got.Files != MechNone || len(got.Rules) != 5 || got.Rules[2].Mechanism != MechNone {
		t.Errorf("JSON report: %+v", got)
	}
	if strings.Count(js.String(), "\n") != 1 {
		t.Errorf("JSON report is not one line: %q", js.String())
	}

	// A path that could forge a line is quoted.
	r = Report{Rules: []RuleReport{{ID: 3, Kind: policy.KindDenyPath, Rule: "/tmp/a\nassay: rule 4", Mechanism: MechLandlock}}}
	text.Reset()
	r.WriteText(&text, "h")
	if strings.Count(text.String(), "\n") != 2 {
		t.Errorf("newline in a path broke the report:\n%s", text.String())
	}
}

// TestDecideV2: version 2 file rules (the baseline included) are BPF LSM's
// where it works, in audit mode too; else Landlock's in enforce mode, the
// traced opens' in audit mode, and NOT ENFORCED without either.
func TestDecideV2(t *testing.T) {
	p := parse(t, "version: 2\nfiles:\n  default: deny\n  allow:\n    - {path: /srv/, access: rw, id: 10}\n  deny:\n    - {path: /srv/.env, id: 11}\n")
	for _, tc := range []struct {
		name  string
		env   Env
		files string
	}{
		{"bpf lsm", Env{LandlockABI: 7}, MechBPFLSM},
		{"bpf lsm audit", Env{LandlockABI: 7, Audit: true}, MechBPFLSM},
		{"landlock", Env{BPFLSM: errLSM, LandlockABI: 7}, MechLandlock},
		{"audit without bpf lsm", Env{BPFLSM: errLSM, LandlockABI: 7, Audit: true}, MechTraceAudit},
		{"nothing", Env{BPFLSM: errLSM, Landlock: errLandlock}, MechNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Decide(p, tc.env)
			if r.Files != tc.files {
				t.Errorf("Files = %q, want %q", r.Files, tc.files)
			}
			m := mechanisms(r)
			for _, id := range []uint32{10, 11, policy.FilesDefaultID, policy.BaselineFirstID} {
				if m[id] != tc.files {
					t.Errorf("rule %d: %q, want %q", id, m[id], tc.files)
				}
			}
			if tc.files == MechBPFLSM {
				for _, rr := range r.Rules {
					if rr.Reason != "" {
						t.Errorf("rule %d enforced by BPF LSM with a reason: %q", rr.ID, rr.Reason)
					}
				}
			}
		})
	}
}
