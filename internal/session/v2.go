package session

import (
	"fmt"
	"time"

	"github.com/assaymcp/assay/internal/events"

	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
)

// compileV2 turns a version 2 policy into kernel rules: the network section
// for the cgroup programs. File rules are refused here until BPF LSM
// enforces them (the Landlock fallback of `assay run` takes them apart
// from the kernel rules).
func compileV2(p *policy.Policy) (kernel.Rules, error) {
	r := kernel.Rules{DenyPorts: map[uint16]uint32{}}
	if p.HasFileRules() {
		return r, fmt.Errorf("%s: version 2 file rules are not enforced with BPF LSM by this build (assay run enforces them with Landlock)", p.File)
	}
	r.Net2 = CompileNet2(p)
	return r, nil
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
	if err != nil || (e.Kind != events.KindTraceOpen && e.Kind != events.KindTraceExec && e.Kind != events.KindTraceUnix) {
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
