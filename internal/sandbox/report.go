package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

// Mechanisms named in the enforcement report.
const (
	MechBPFLSM    = "bpf-lsm"
	MechLandlock  = "landlock"
	MechCgroupBPF = "cgroup-bpf"
	// MechResolver: version 2 host entries, enforced by assay's own
	// resolver (which learns the allowed names' addresses) and the cgroup
	// programs (which redirect DNS and judge the learned addresses).
	MechResolver = "resolver+cgroup-bpf"
	MechNone     = "NOT ENFORCED"
	// MechMCPRelay: tool rules, enforced by assay's own relay of the
	// server's stdio (`assay run --mcp`), not by the kernel.
	MechMCPRelay = "mcp-relay"
)

// Env is what the kernel offers, as probed at start.
type Env struct {
	// BPFLSM is nil when BPF LSM programs load and attach, else why not.
	BPFLSM error
	// LandlockABI is the Landlock ABI version, 0 when unavailable.
	LandlockABI int
	// Landlock is why Landlock is unavailable (when LandlockABI is 0).
	Landlock error
	// Audit: audit mode (report, never block).
	Audit bool
	// MCP: `assay run --mcp` relays the server's stdio (tool rules).
	MCP bool
}

// RuleReport says how one rule is enforced.
type RuleReport struct {
	ID        uint32 `json:"id"`
	Kind      string `json:"kind"`
	Rule      string `json:"rule"`
	Mechanism string `json:"mechanism"`
	Reason    string `json:"reason,omitempty"`
}

// Report is the enforcement plan for a policy: every rule with the
// mechanism that enforces it, or MechNone and why.
type Report struct {
	Rules []RuleReport
	// Files is the mechanism for the file rules: MechBPFLSM, MechLandlock
	// or MechNone ("" when the policy has none).
	Files string
	// Audit is audit mode.
	Audit bool
	// Notes are extra lines for the operator (Landlock semantics, warnings).
	Notes []string
	// User is who the command runs as; Contain says how it is contained;
	// NotContained lists the containments turned off, with what follows.
	User         string
	Contain      []string
	NotContained []string
	// Cgroup and CgroupID name the command's cgroup, once created.
	Cgroup   string
	CgroupID uint64
}

// Decide picks a mechanism for every rule of p. Network rules are always
// cgroup-bpf (the cgroup sock_addr programs need no LSM; if they cannot be
// attached, the launch fails). File rules use BPF LSM when it works, else
// Landlock in enforce mode; Landlock cannot report without blocking, so in
// audit mode file rules without BPF LSM are MechNone.
func Decide(p *policy.Policy, env Env) Report {
	r := Report{Audit: env.Audit}
	if p.Version == 2 && p.HasFileRules() {
		decideV2Files(&r, p, env)
	} else if p.HasFileRules() {
		switch {
		case env.BPFLSM == nil:
			r.Files = MechBPFLSM
		case env.Audit:
			r.Files = MechNone
		case env.LandlockABI > 0:
			r.Files = MechLandlock
		default:
			r.Files = MechNone
		}
	}
	for _, rule := range p.Rules() {
		rr := RuleReport{ID: rule.ID, Kind: rule.Kind, Rule: rule.Detail}
		switch rule.Kind {
		case policy.KindDenyTool, policy.KindAllowTool, policy.KindNotInAllowTools:
			rr.Mechanism = MechMCPRelay
			if !env.MCP {
				rr.Mechanism = MechNone
				rr.Reason = "tool rules are enforced by assay run --mcp (assay relays the server's stdio)"
			}
			r.Rules = append(r.Rules, rr)
			continue
		}
		if rule.Kind == policy.KindDNSDefault || (rule.Kind == policy.KindNetAllow && strings.HasPrefix(rule.Detail, "host ")) {
			rr.Mechanism = MechResolver
			r.Rules = append(r.Rules, rr)
			continue
		}
		if !isFileKind(rule.Kind) {
			rr.Mechanism = MechCgroupBPF
			r.Rules = append(r.Rules, rr)
			continue
		}
		rr.Mechanism = r.Files
		switch {
		case p.Version == 2:
			rr.Reason = v2FileReason(env)
			r.Rules = append(r.Rules, rr)
			continue
		}
		switch r.Files {
		case MechLandlock:
			rr.Reason = "fallback, BPF LSM unavailable (" + short(env.BPFLSM) + ")"
		case MechNone:
			if env.Audit {
				rr.Reason = "audit mode needs BPF LSM (" + short(env.BPFLSM) + "); Landlock cannot report without blocking"
			} else {
				rr.Reason = "BPF LSM unavailable (" + short(env.BPFLSM) + ") and Landlock unavailable (" + short(env.Landlock) + ")"
			}
		}
		r.Rules = append(r.Rules, rr)
	}
	if r.Files == MechLandlock || r.Files == MechNone {
		r.Notes = append(r.Notes, "bpf-lsm: "+describe(env.BPFLSM))
		if r.Files == MechNone && !env.Audit {
			r.Notes = append(r.Notes, "landlock: "+oneLine(env.Landlock))
		}
	}
	return r
}

func oneLine(err error) string {
	if err == nil {
		return "unknown reason"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// describe renders a kernel feature error as "FEATURE unavailable: ERRNO
// (NAME); FIX", leaving out the loader library's guesses (it suggests
// MEMLOCK for any EPERM).
func describe(err error) string {
	var fe *kernel.FeatureError
	var errno unix.Errno
	if errors.As(err, &fe) && errors.As(err, &errno) {
		s := fe.Feature + " unavailable: " + errno.Error() + " (" + short(errno) + ")"
		if fe.Fix != "" {
			s += "; " + strings.TrimSuffix(fe.Fix, "; run `assay doctor`") + "; see `assay doctor`"
		}
		return s
	}
	return oneLine(err)
}

// short names an error by its errno when it has one.
func short(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if errno == unix.EOPNOTSUPP {
			return "EOPNOTSUPP" // ErrnoName says ENOTSUP, the same number
		}
		return unix.ErrnoName(errno)
	}
	s := oneLine(err)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// Unenforced is the number of rules nothing enforces.
func (r Report) Unenforced() int {
	n := 0
	for _, rr := range r.Rules {
		if rr.Mechanism == MechNone {
			n++
		}
	}
	return n
}

// ErrDegraded is returned by Check when a rule cannot be enforced.
var ErrDegraded = errors.New("degraded enforcement")

// Check fails closed: an error when any rule is not enforced, unless
// allowDegraded.
func (r Report) Check(allowDegraded bool) error {
	n := r.Unenforced()
	if n == 0 || allowDegraded {
		return nil
	}
	return fmt.Errorf("%w: %d rule(s) of the policy cannot be enforced on this kernel (see the report above); not starting the command. Run `assay doctor`, or pass --allow-degraded to run without them", ErrDegraded, n)
}

// WriteText writes the report for operators, each line prefixed "assay: ".
func (r Report) WriteText(w io.Writer, header string) error {
	var b strings.Builder
	b.WriteString("assay: " + header + "\n")
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, rr := range r.Rules {
		mech := rr.Mechanism
		if r.Audit && mech != MechNone {
			mech += " (audit)"
		}
		if rr.Reason != "" {
			mech += ": " + rr.Reason
		}
		fmt.Fprintf(tw, "assay:   rule %s\t%s\t%s\t%s\n", strconv.FormatUint(uint64(rr.ID), 10), rr.Kind, quoteRule(rr.Rule), mech)
	}
	tw.Flush()
	if len(r.Rules) == 0 {
		b.WriteString("assay:   (the policy has no rules)\n")
	}
	for _, c := range r.Contain {
		b.WriteString("assay: contained: " + c + "\n")
	}
	for _, n := range r.NotContained {
		b.WriteString("assay: NOT CONTAINED: " + n + "\n")
	}
	for _, n := range r.Notes {
		b.WriteString("assay: " + n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// quoteRule quotes a rule detail (a path) that could break the line.
func quoteRule(s string) string {
	for _, c := range s {
		if c < ' ' || c == 0x7f || c == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

type jsonReport struct {
	Schema   int          `json:"schema"`
	Type     string       `json:"type"` // "enforcement"
	Time     string       `json:"time"`
	Cgroup   string       `json:"cgroup,omitempty"`
	CgroupID uint64       `json:"cgroup_id,omitempty"`
	Audit    bool         `json:"audit"`
	Files    string       `json:"files_mechanism,omitempty"`
	Rules    []RuleReport `json:"rules"`
	Notes    []string     `json:"notes,omitempty"`
	User     string       `json:"user,omitempty"`
	Contain  []string     `json:"contained,omitempty"`
	NotCont  []string     `json:"not_contained,omitempty"`
}

// WriteJSON writes the report as one JSON object line.
func (r Report) WriteJSON(w io.Writer) error {
	rules := r.Rules
	if rules == nil {
		rules = []RuleReport{}
	}
	out, err := json.Marshal(jsonReport{Schema: events.SchemaVersion, Type: "enforcement", Time: time.Now().UTC().Format(events.JSONTime), Cgroup: r.Cgroup, CgroupID: r.CgroupID, Audit: r.Audit, Files: r.Files, Rules: rules, Notes: r.Notes, User: r.User, Contain: r.Contain, NotCont: r.NotContained})
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}
