package session

import (
	"fmt"
	"time"

	"github.com/assaymcp/assay/internal/events"

	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

// compileV2 turns a version 2 policy into kernel rules: the network section
// for the cgroup programs, the file rules (the baseline's included) for
// BPF LSM, each with what it allows. (`assay run` takes the file rules
// apart when Landlock enforces them instead.)
func compileV2(p *policy.Policy, root string) (kernel.Rules, error) {
	r := kernel.Rules{DenyPorts: map[uint16]uint32{}}
	r.Net2 = CompileNet2(p)
	if !p.FilesSet {
		return r, nil
	}
	r.FilesV2 = true
	r.FilesDefaultDeny = p.FileDefault == policy.DefaultDeny
	skip := map[uint32]bool{}
	for _, f := range UnkeyedBaseline(p) {
		skip[f.ID] = true
	}
	var rules []policy.FileRule
	for _, f := range p.FileRules() {
		switch {
		case skip[f.ID]:
			continue
		case isProcSelfRule(f):
			r.Files = append(r.Files, kernel.File{Dev: kernel.ProcKeyDev, Ino: kernel.ProcSelfIno, ID: f.ID, IsDir: true, FS: "proc", Access: uint8(f.Access)})
			continue
		case underProcSelf(f.Path):
			return r, fmt.Errorf("%s:%d: %s: %s: under /proc/self only /proc/self/ as a whole can carry a rule", p.File, f.Line, section(p, f), f.Path)
		}
		rules = append(rules, f)
	}
	files, err := identifyRules(p, rules, root)
	if err != nil {
		return r, err
	}
	r.Files = append(r.Files, files...)
	return r, nil
}

// UnkeyedBaseline returns the runtime-baseline rules of p that BPF LSM
// cannot key: files under /proc whose inode numbers the kernel does not
// keep (sysctl files such as /proc/sys/kernel/cap_last_cap), and paths on
// filesystems where file rules are refused (a cgroup2 /sys/fs/cgroup).
// They are left out of the kernel rules, so what they would allow is
// refused (by the rule above them or files.default): narrower than the
// baseline, never wider. UnkeyedReason says why for each.
func UnkeyedBaseline(p *policy.Policy) []policy.FileRule {
	if p.Version != 2 || p.Baseline != policy.BaselineRuntime {
		return nil
	}
	var out []policy.FileRule
	for _, f := range p.FileRules() {
		if f.ID < policy.BaselineFirstID || isProcSelfRule(f) {
			continue
		}
		if UnkeyedReason(f.Path) != "" {
			out = append(out, f)
		}
	}
	return out
}

// UnkeyedReason says why BPF LSM cannot key a baseline path, "" when it
// can.
func UnkeyedReason(path string) string {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return "" // resolved (and refused, if need be) with the other rules
	}
	if uint64(sfs.Type) == kernel.MagicProc {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil || !procStable(st.Ino) {
			return "its inode number is not stable (a sysctl file)"
		}
		return ""
	}
	if _, ok := stableFS[uint64(sfs.Type)]; !ok {
		name, ok := otherFS[uint64(sfs.Type)]
		if !ok {
			name = fmt.Sprintf("magic %#x", uint64(sfs.Type))
		}
		return "it is on a " + name + " filesystem, where file rules are refused"
	}
	return ""
}

// CompileNet2 returns the kernel form of a version 2 network section, nil
// when the policy has none.
func CompileNet2(p *policy.Policy) *kernel.Net2 {
	if !p.NetworkSet {
		return nil
	}
	n := &kernel.Net2{DefaultDeny: p.NetDefault == policy.DefaultDeny}
	n.Deny = net2Entries(p.NetDeny)
	n.Allow = net2Entries(p.NetAllow)
	return n
}

// net2Entries expands entries to one per port. When two entries share a
// key, the first keeps it, as policy.NetVerdict reports the first match.
func net2Entries(rs []policy.NetRule) []kernel.Net2Entry {
	var out []kernel.Net2Entry
	seen := map[kernel.Net2Entry]bool{}
	add := func(e kernel.Net2Entry) {
		k := e
		k.ID = 0
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	for _, r := range rs {
		if r.Host != "" {
			continue // the resolver learns its addresses (internal/dns)
		}
		e := kernel.Net2Entry{Proto: uint8(r.Proto), ID: r.ID}
		if !r.AnyAddr {
			e.Prefix = r.Prefix
		}
		if len(r.Ports) == 0 {
			add(e)
			continue
		}
		for _, port := range r.Ports {
			e.Port = port
			add(e)
		}
	}
	return out
}

// judged handles a traced record for Options.Judge; it reports whether
// it did (false: not a traced record, render it as usual). Called with
// renderMu held.
func (s *Session) judged(raw []byte, idle bool) bool {
	e, err := events.Decode(raw)
	if err != nil || (e.Kind != events.KindTraceOpen && e.Kind != events.KindTraceExec && e.Kind != events.KindTraceUnix && e.Kind != events.KindTraceFileOp) {
		return false
	}
	if s.sinceAnchor++; idle || s.sinceAnchor >= 4096 {
		s.sinceAnchor = 0
		s.renderer.Anchor(time.Now(), monotonicNow())
	}
	if e.Kind == events.KindTraceOpen {
		if d, ok := s.opts.Judge(e); ok {
			err = s.renderer.Event(d)
		}
	}
	if err == nil {
		if s.opts.QuietTrace {
			s.renderer.Received++
		} else {
			err = s.renderer.Record(raw)
		}
	}
	if err == nil && idle {
		err = s.renderer.Flush()
	}
	if err != nil {
		s.failWrite(err)
	}
	return true
}
