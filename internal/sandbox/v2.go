package sandbox

import (
	"fmt"
	"path"
	"strings"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/landlock"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
	"golang.org/x/sys/unix"
)

// Version 2 file rules under `assay run`: enforced with BPF LSM where it
// works (the nearest rule's r/w/x against what is asked, natively in audit
// mode too), else with Landlock's allow model (landlock.Allow). A rule
// Landlock cannot enforce exactly is NOT ENFORCED in the report (so the
// command does not start unless --allow-degraded).

// isFileKind reports whether a report rule kind is a file rule.
func isFileKind(kind string) bool {
	switch kind {
	case policy.KindDenyPath, policy.KindAllowPath, policy.KindFilesDefault, policy.KindBaselinePath:
		return true
	}
	return false
}

// compileForRun resolves what the kernel session will enforce, failing
// early on a rule that cannot be resolved. Version 2 file rules are
// resolved for the kernel only when BPF LSM enforces them (lsm); Landlock
// resolves them later otherwise.
func compileForRun(p *policy.Policy, lsm bool) (kernel.Rules, error) {
	if p.Version == 2 && !lsm {
		np := *p
		withoutFiles(&np)
		p = &np
	}
	return session.Compile(p)
}

// addShimRule lets the command's cgroup execute assay's own binary under
// version 2 file rules with BPF LSM: `assay run` starts its shim (this very
// binary, which sets the sandbox up and then executes the command) inside
// the cgroup, where files.default: deny would refuse it. The rule
// (kernel.RuleShim) allows r and x on that one file, unless a policy rule
// names it already; on a filesystem where the kernel's identity of the
// file cannot be read, nothing is added (a rule must allow it then).
func addShimRule(r *kernel.Rules) error {
	fd, err := unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open assay's own executable: %w", err)
	}
	defer unix.Close(fd)
	ids, err := kernel.Identify([]int{fd})
	if err != nil {
		return fmt.Errorf("identify assay's own executable: %w", err)
	}
	id := ids[0]
	if !id.OK {
		return nil
	}
	for _, f := range r.Files {
		if f.Dev == id.Dev && f.Ino == id.Ino {
			return nil
		}
	}
	r.Files = append(r.Files, kernel.File{Dev: id.Dev, Ino: id.Ino, ID: kernel.RuleShim, FS: id.FSType,
		Access: kernel.AccessRead | kernel.AccessExec})
	return nil
}

// withoutFiles drops the file rules of a policy (they are enforced by
// Landlock, not by the kernel session).
func withoutFiles(p *policy.Policy) {
	p.FileDeny, p.FileAllow = nil, nil
	p.FilesSet, p.FileDefault, p.Baseline = false, policy.DefaultAllow, policy.BaselineNone
}

// decideV2Files sets the mechanism of version 2 file rules: BPF LSM where
// it works; else Landlock in enforce mode, the traced opens judged in user
// space in audit mode, NOT ENFORCED without Landlock.
func decideV2Files(r *Report, p *policy.Policy, env Env) {
	switch {
	case env.BPFLSM == nil:
		r.Files = MechBPFLSM
		for _, f := range session.UnkeyedBaseline(p) {
			r.Notes = append(r.Notes, fmt.Sprintf("bpf-lsm: baseline %s (rule %d) is left out: %s, so reading it is refused", f.Path, f.ID, session.UnkeyedReason(f.Path)))
		}
	case env.Audit:
		r.Files = MechTraceAudit
	case env.LandlockABI > 0:
		r.Files = MechLandlock
	default:
		r.Files = MechNone
	}
	if p.Baseline == policy.BaselineRuntime {
		n := len(policy.RuntimeBaseline())
		r.Rules = append(r.Rules, RuleReport{ID: policy.BaselineFirstID, Kind: policy.KindBaselinePath,
			Rule: fmt.Sprintf("runtime baseline (%d paths, see assay policy baseline)", n), Mechanism: r.Files, Reason: v2FileReason(env)})
	}
}

// v2FileReason explains the mechanism of a version 2 file rule.
func v2FileReason(env Env) string {
	switch {
	case env.BPFLSM == nil:
		return ""
	case env.Audit:
		return "audit mode: observation only, the traced opens are judged in user space (nothing is blocked; other operations are not seen)"
	case env.LandlockABI > 0:
		return "BPF LSM unavailable (" + short(env.BPFLSM) + ")"
	}
	return "Landlock unavailable (" + short(env.Landlock) + ")"
}

// landlockV2 builds the Landlock ruleset of a version 2 policy and marks
// the rules it cannot enforce exactly as NOT ENFORCED in the report. It
// returns the ruleset and the rules under /proc, which the shim adds in
// the sandbox's own /proc (assay's /proc is another file system).
func landlockV2(rep *Report, p *policy.Policy, abi int) (*landlock.Ruleset, map[string]int, error) {
	var rules []landlock.PathRule
	var proc map[string]int
	for _, r := range p.FileRules() {
		if r.Path == "/proc" || strings.HasPrefix(r.Path, "/proc/") {
			if proc == nil {
				proc = map[string]int{}
			}
			proc[r.Path] = int(r.Access)
			continue
		}
		rules = append(rules, landlock.PathRule{Path: r.Path, Access: int(r.Access), ID: r.ID})
	}
	def := 0
	if p.FileDefault == policy.DefaultAllow {
		def = int(policy.AccessAll)
	}
	res, err := landlock.Allow(abi, def, rules)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: files: %w", p.File, err)
	}
	status := res.Status
	// Rules under /proc are added as grants only: one with fewer rights
	// than the rule (or default) above it is not enforced.
	for _, r := range p.FileRules() {
		if _, ok := proc[r.Path]; !ok {
			continue
		}
		above := def
		for cur := path.Dir(r.Path); ; cur = path.Dir(cur) {
			if a, ok := proc[cur]; ok {
				above = a
				break
			}
			if cur == "/" {
				break
			}
		}
		if above&^int(r.Access) != 0 {
			status = append(status, landlock.RuleStatus{ID: r.ID, Path: r.Path, Reason: "under /proc Landlock rules are grants only: a rule with fewer rights than the rule above it cannot be enforced"})
		}
	}
	for _, st := range status {
		if st.Enforced {
			continue
		}
		found := false
		for i := range rep.Rules {
			if rep.Rules[i].ID == st.ID {
				rep.Rules[i].Mechanism, rep.Rules[i].Reason = MechNone, st.Reason
				found = true
			}
		}
		if !found { // a baseline rule
			rep.Rules = append(rep.Rules, RuleReport{ID: st.ID, Kind: policy.KindBaselinePath, Rule: st.Path, Mechanism: MechNone, Reason: st.Reason})
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("landlock: ABI %d, %d rules: the version 2 allow model (nearest rule wins)", res.ABI, res.Rules))
	if len(res.Split) > 0 {
		rep.Notes = append(rep.Notes, "landlock: entries granted one by one (to keep a rule with fewer rights inside a tree) in: "+strings.Join(res.Split, " ")+"; entries created there later by other processes get only the reduced rights")
	}
	rep.Notes = append(rep.Notes,
		"landlock: not controlled: chmod/chown/utimes (attribute changes), mmap(PROT_EXEC) of a readable file, stat; rules follow paths, not inodes (hard links and bind mounts elsewhere keep their own rules)",
		"landlock: refusals are answered with EACCES; refused opens are reported as BLOCKED FILE events judged in user space from the traced opens (path as written, op=open, the rule the policy names for it); other refused operations (exec, unlink, rename, mkdir) are not reported")
	if res.ABI < 9 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("landlock: ABI %d: connecting to a Unix socket at a path is not controlled (RESOLVE_UNIX needs ABI 9): w on a socket path is not enforced", res.ABI))
	}
	if _, ok := proc[policy.ProcSelf]; ok {
		rep.Notes = append(rep.Notes, "landlock: /proc/self is the started process's own /proc/PID: its child processes cannot read theirs")
	}
	if len(proc) > 0 {
		rep.Notes = append(rep.Notes, "landlock: rules under /proc are added in the sandbox's own /proc by the started process, as nearest-rule grants only (a restriction under /proc is not enforced there)")
	}
	return res.Ruleset, proc, nil
}

// CheckV2 says how `assay run` would enforce each rule of a version 2
// policy on this machine, resolving the paths as run does (for `assay
// policy check`). Probing BPF LSM needs root.
func CheckV2(p *policy.Policy) (Report, error) {
	env := Probe(p, policy.EffectiveMode(p, false) == policy.ModeAudit)
	if _, err := compileForRun(p, env.BPFLSM == nil); err != nil {
		return Report{}, err
	}
	rep := Decide(p, env)
	if rep.Files == MechLandlock {
		rs, _, err := landlockV2(&rep, p, env.LandlockABI)
		if err != nil {
			return rep, err
		}
		rs.Close()
	}
	return rep, nil
}

// MechTraceAudit: version 2 file rules in audit mode without BPF LSM:
// the traced opens are judged against the policy in user space. An
// observation only: nothing is blocked, and only opens are seen.
const MechTraceAudit = "trace-audit"

// judgeV2 returns the session's judge for version 2 file rules: a traced
// open of an absolute path that the policy refuses for the access asked
// becomes a file event naming the path and the deciding rule. In enforce
// mode (Landlock) only opens that failed with EACCES count (Landlock's
// refusals; the rule is the one the policy names for the path as written,
// where it can be determined); in audit mode every such open is reported as
// an audit event.
func judgeV2(p *policy.Policy, audit bool) func(events.Event) (events.Event, bool) {
	return func(e events.Event) (events.Event, bool) {
		if !strings.HasPrefix(e.Path, "/") || e.Flags&unix.O_PATH != 0 {
			return e, false
		}
		if !audit && e.Ret != -int32(unix.EACCES) {
			return e, false
		}
		var want policy.Access
		switch e.Flags & unix.O_ACCMODE {
		case unix.O_RDONLY:
			want = policy.AccessRead
		case unix.O_WRONLY:
			want = policy.AccessWrite
		default:
			want = policy.AccessRead | policy.AccessWrite
		}
		if e.Flags&(unix.O_CREAT|unix.O_TRUNC) != 0 {
			want |= policy.AccessWrite
		}
		d := p.FileAccess(path.Clean(e.Path))
		if want&^d.Access == 0 {
			return e, false
		}
		v := events.VerdictBlocked
		if audit {
			v = events.VerdictAudit
		}
		return events.Event{Kind: events.KindFile, Verdict: v, RuleID: d.Rule.ID, PID: e.PID, TID: e.TID,
			CgroupID: e.CgroupID, MonoNS: e.MonoNS, Comm: e.Comm, Op: events.OpOpen, Path: e.Path}, true
	}
}
