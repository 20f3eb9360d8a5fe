// Package session is the enforcement session that `assay run` and `assay
// monitor` both drive: it turns a policy and a scope into enforcement,
// resolving file rules, loading and attaching the kernel programs, streaming
// their events to a renderer, and at the end detaching everything and
// accounting for every event.
package session

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/assaymcp/assay/internal/cgroup"
	"github.com/assaymcp/assay/internal/dns"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/metrics"
	"github.com/assaymcp/assay/internal/policy"
	"golang.org/x/sys/unix"
)

// Options say what to enforce where and where events go.
type Options struct {
	Policy *policy.Policy
	Audit  bool // audit mode even when the policy says enforce
	Scopes []cgroup.Scope
	All    bool // the whole host
	Trace  bool // the tracepoint (observation) path
	// ObserveChanges and ObserveLSM: `assay learn`'s observation (see
	// kernel.Config): changes on the tracepoint path, or opens and changes
	// in the LSM hooks.
	ObserveChanges, ObserveLSM bool

	Object    string // custom BPF object; "" for the embedded one
	RingBytes int    // 0 for the default
	// RateLimit is the most events one cgroup may emit per second (the
	// rest are counted as suppressed); 0 for the default, negative for
	// unlimited.
	RateLimit int
	// Pin, when set, pins the instance under bpffs with this name, so that
	// enforcement outlives this process.
	Pin string

	Out    io.Writer // events
	Format events.Format

	// Rules, when set, are the policy's rules already compiled (see
	// Compile): `assay run` compiles once, so that a path cannot be swapped
	// between its checks and the load.
	Rules *kernel.Rules
	// OnWriteErr, when set, is called once, with the first error writing
	// events (from the reading goroutine).
	OnWriteErr func(error)
	// Judge, when set, sees every traced open (the tracepoint path must be
	// loaded) and may turn it into an event of its own (policy v2 under
	// Landlock: a refused open becomes a BLOCKED FILE event). With
	// QuietTrace the traced opens and execs themselves are not written
	// (the tracepoint path is loaded for Judge only, not asked for).
	Judge      func(events.Event) (events.Event, bool)
	QuietTrace bool
	// Observe, when set, sees every record the kernel delivers, decoded
	// (from the reading goroutine, before it is rendered; also after a
	// failed write): `assay learn` builds a policy from them.
	Observe func(events.Event)
	// PathRoot is the root directory policy paths are resolved in (a
	// container's /proc/PID/root, see resolve.OpenIn); "" for the host's.
	PathRoot string

	// ScopeEmpty says Stop is only called once no task is left in the
	// scopes (e.g. `assay run` removed its cgroup first). Stop no longer
	// needs to know: it waits for programs in flight with an RCU grace
	// period, not a sleep.
	ScopeEmpty bool

	// MCP, when set, gives the MCP context of an event from its kernel
	// time (`assay run --mcp`, see package mcp).
	MCP func(mono uint64) []events.MCPCall

	// Metrics, when set, counts the session's events, its ring buffers
	// and its reloads (--metrics).
	Metrics *metrics.Metrics

	// AggInterval is how often the kernel's aggregates of events not
	// emitted one by one are read and reported (and the rate budgets of
	// past seconds swept); 0 means every second. Stop reads them too.
	AggInterval time.Duration
	// RateEntries and AggPairs size the per-cgroup budget map and the
	// aggregation table (see kernel.Config); 0 for the defaults. Tests
	// shrink them.
	RateEntries int
	AggPairs    int

	// DNSObserve starts assay's resolver in observe mode (`assay learn`):
	// the scope's DNS queries are redirected to it, every name is
	// forwarded, and OnDNSAnswer sees every answer. Without it the
	// resolver runs only for a policy with host entries (see package dns).
	DNSObserve bool
	// OnDNSAnswer, when set, sees every answer the resolver releases
	// (after its addresses were learned).
	OnDNSAnswer func(dns.Answer)
}

// Session is enforcement in force.
type Session struct {
	opts     Options
	inst     *kernel.Instance
	stream   *kernel.Stream
	renderer *events.Renderer
	// renderMu serializes the renderer between the stream and Emit;
	// rendered is set once Stop wrote the last event.
	renderMu sync.Mutex
	rendered bool
	// sinceAnchor counts records since the renderer's clocks were paired.
	sinceAnchor int
	writeErr    atomic.Pointer[error]
	// writeFailed is closed when writeErr is set (see WriteFailed).
	writeFailedOnce sync.Once
	writeFailed     chan struct{}
	pol             atomic.Pointer[policy.Policy] // the policy in force, after a reload
	paths           atomic.Pointer[rulePaths]     // file rule paths by id, for pol
	mu              sync.Mutex
	stopped         bool
	// Rules is the number of rules loaded into the kernel.
	Rules int

	rules []events.RuleCounts // guarded by renderMu
	dns   *dnsState           // the resolver (dns.go); nil without host entries
	// The aggregation loop (see aggregates): closing quit stops it, done
	// is closed when it has.
	quit, done chan struct{}
	unseen     uint64 // suppressed+dropped at the last drain
}

// AuditMode reports whether the options ask for audit mode.
func (o Options) AuditMode() bool {
	return policy.EffectiveMode(o.Policy, o.Audit) == policy.ModeAudit
}

// Start loads and attaches everything. On error nothing is attached.
func Start(o Options) (*Session, error) {
	if o.Policy == nil {
		return nil, errors.New("no policy")
	}
	if !o.All && len(o.Scopes) == 0 {
		return nil, errors.New("no scope: give --cgroup PATH or --pid PID, or --all to judge the whole host")
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := noToolRules(o.Policy); err != nil {
		return nil, err
	}
	var rules kernel.Rules
	if o.Rules != nil {
		rules = *o.Rules
	} else {
		var err error
		if rules, err = CompileIn(o.Policy, o.PathRoot); err != nil {
			return nil, err
		}
	}
	if o.Policy.HasFileRules() {
		if err := kernel.ProbeLSM(); err != nil {
			return nil, fmt.Errorf("the policy has file rules (%d) and this kernel cannot enforce them: %w", len(rules.Files), err)
		}
	}
	s := &Session{opts: o, Rules: len(o.Policy.Rules())}
	s.renderer = events.NewRenderer(o.Out, o.Format, s.rulePath, monotonicNow())
	if o.wantsDNS(o.Policy) {
		if o.All {
			return nil, errors.New("network.allow host entries cannot be enforced for the whole host (--all): assay's resolver serves one sandbox; give --cgroup or --pid")
		}
		kd, err := s.startDNS(o.Policy)
		if err != nil {
			return nil, err
		}
		rules.DNS = kd
	}
	cfg := kernel.Config{
		Rules:  rules,
		All:    o.All,
		Audit:  o.AuditMode(),
		Trace:  o.Trace,
		Object: o.Object,

		ObserveChanges: o.ObserveChanges,
		ObserveLSM:     o.ObserveLSM,
		RingBytes:      o.RingBytes,
		RateLimit:      o.RateLimit,

		RateEntries: o.RateEntries,
		AggPairs:    o.AggPairs,
	}
	if o.All {
		root, err := cgroup.Root()
		if err != nil {
			return nil, err
		}
		cfg.Root = root.Path
	}
	for _, s := range o.Scopes {
		cfg.Scopes = append(cfg.Scopes, kernel.Scope{Path: s.Path, ID: s.ID, Level: s.Level})
	}
	inst, err := kernel.Load(cfg)
	if err != nil {
		s.stopDNS()
		return nil, err
	}
	s.inst = inst
	if s.dns != nil {
		s.setTable(o.Policy)
	}
	if o.MCP != nil {
		s.renderer.SetMCP(o.MCP)
	}
	if m := o.Metrics; m != nil {
		s.renderer.SetObserver(m.Event)
		m.SetRing(func() (metrics.Ring, error) {
			c, err := s.inst.Counters()
			return ring(c), err
		})
		m.Policy(o.Policy.Version, policy.EffectiveMode(o.Policy, o.Audit).String())
	}
	// Read before attaching, so that no event waits on a reader.
	s.stream, err = inst.Stream(s.record)
	if err != nil {
		s.stopDNS()
		inst.Close()
		return nil, err
	}
	if err := inst.Attach(); err != nil {
		s.stream.Stop()
		s.stopDNS()
		inst.Close()
		return nil, err
	}
	if o.Pin != "" {
		if err := inst.Pin(s.meta(o.Pin)); err != nil {
			s.stream.Stop()
			s.stopDNS()
			inst.Close()
			return nil, err
		}
	}
	// What only the start needed (the BPF object's program specs, the
	// kernel's BTF) is freed, and the start's garbage is returned to the
	// system a moment later: an idle monitor keeps only what it uses.
	inst.ReleaseStartup()
	time.AfterFunc(250*time.Millisecond, debug.FreeOSMemory)
	s.startAggregates()
	return s, nil
}

// meta describes the session for a pinned instance.
func (s *Session) meta(name string) kernel.Meta {
	p := s.opts.Policy
	mode := "enforce"
	if s.opts.AuditMode() {
		mode = "audit"
	}
	return kernel.Meta{
		Name: name, Policy: p.File, Digest: p.Digest, Rules: len(p.Rules()), Mode: mode,
		Summary: p.Summary(), AttachedAt: time.Now().UTC(), Version: Version, PID: os.Getpid(),
		AuditFlag: s.opts.Audit,
	}
}

// Version is the assay version recorded with pinned instances; the CLI
// sets it.
var Version = "devel"

// Reload swaps in a new policy without detaching (see kernel.Reload): the
// old policy stays in force until the new one is completely in place, and
// stays in force if the new one is refused. The audit flag of the session
// still applies.
func (s *Session) Reload(p *policy.Policy) error {
	err := s.reload(p)
	if m := s.opts.Metrics; m != nil {
		inForce := s.policy() == p
		m.Reload(inForce)
		if inForce {
			m.Policy(p.Version, policy.EffectiveMode(p, s.opts.Audit).String())
		}
	}
	return err
}

// Metrics is the session's metrics (nil without --metrics; its methods
// then do nothing).
func (s *Session) Metrics() *metrics.Metrics { return s.opts.Metrics }

func ring(c kernel.Counters) metrics.Ring {
	var r metrics.Ring
	for i, p := range []kernel.Path{kernel.PathTracepoint, kernel.PathLSM, kernel.PathSocket} {
		r.Emitted[i], r.Dropped[i], r.Suppressed[i] = c.Emitted[p], c.Dropped[p], c.Suppressed[p]
	}
	return r
}

func (s *Session) reload(p *policy.Policy) error {
	// Probe BPF LSM only when the file programs are not attached yet (a
	// pinned instance reopened by `assay reload` has no policy text, but
	// its links say): the probe attaches a program of its own to
	// file_open, which is best not done needlessly under load.
	if p.HasFileRules() && !s.policy().HasFileRules() && !s.inst.FileProgramsAttached() {
		if err := kernel.ProbeLSM(); err != nil {
			return fmt.Errorf("the new policy has file rules and this kernel cannot enforce them: %w", err)
		}
	}
	if err := noToolRules(p); err != nil {
		return err
	}
	rules, err := CompileIn(p, s.opts.PathRoot)
	if err != nil {
		return err
	}
	audit := policy.EffectiveMode(p, s.opts.Audit) == policy.ModeAudit
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("stopped")
	}
	if s.opts.wantsDNS(p) {
		if s.dns == nil {
			return errors.New("the new policy has network.allow host entries and the running one has none: assay's resolver starts with the session; restart it to add host entries")
		}
		v4, v6 := s.dns.srv.Addrs()
		rules.DNS = &kernel.DNS{Resolver4: v4, Resolver6: v6}
	}
	if err := s.inst.Reload(rules, audit); err != nil {
		return err
	}
	if err := s.reloadDNS(p, audit); err != nil {
		return fmt.Errorf("the new policy is in force, but its learned addresses could not all be updated: %w", err)
	}
	s.pol.Store(p)
	if s.inst.Pinned() {
		meta, err := s.inst.Meta()
		if err == nil {
			meta.Policy, meta.Digest, meta.Rules, meta.Summary = p.File, p.Digest, len(p.Rules()), p.Summary()
			meta.Mode = map[bool]string{true: "audit", false: "enforce"}[audit]
			meta.ReloadedAt = time.Now().UTC()
			err = s.inst.UpdateMeta(meta)
		}
		return err
	}
	return nil
}

// LinkFDs returns the descriptors of the session's links (see
// kernel.Instance.LinkFDs).
func (s *Session) LinkFDs() ([]int, bool) { return s.inst.LinkFDs() }

// Pinned reports whether the session's instance outlives it.
func (s *Session) Pinned() bool { return s.inst.Pinned() }

// Resume streams the events of a pinned instance (`assay monitor
// --attach NAME`). Stopping the session leaves the instance in force.
//
// File events name their rule's policy path when the policy file the
// instance was pinned (or last reloaded) with is still there unchanged.
func Resume(name string, out io.Writer, format events.Format) (*Session, kernel.Meta, error) {
	inst, err := kernel.OpenPinned(name)
	if err != nil {
		return nil, kernel.Meta{}, err
	}
	meta, err := inst.Meta()
	if err != nil {
		inst.Close()
		return nil, meta, err
	}
	pol := &policy.Policy{File: meta.Policy}
	if p, err := policy.Load(meta.Policy); err == nil && p.Digest == meta.Digest {
		pol = p
	}
	s := &Session{opts: Options{Policy: pol, Out: out, Format: format}, inst: inst}
	s.renderer = events.NewRenderer(out, format, s.rulePath, monotonicNow())
	s.stream, err = inst.Stream(s.record)
	if err != nil {
		inst.Close()
		return nil, meta, err
	}
	s.startAggregates()
	return s, meta, nil
}

// Stop detaches every program, delivers every event still in the ring
// buffers and every aggregate still in the kernel, and returns the
// accounting. Safe to call once.
//
// There is no sleep: after Detach, the final drain of the aggregates swaps
// the kernel's tables, which waits for an RCU grace period, so every
// program that was running when the links closed has finished; its records
// are then in the ring buffers, which are read to the end. For an unpinned
// instance the records received then equal those emitted (else Stop
// returns an error saying how many are missing).
func (s *Session) Stop() (events.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum events.Summary
	if s.stopped {
		return sum, errors.New("already stopped")
	}
	s.stopped = true
	close(s.quit)
	<-s.done
	var errs []error
	if !s.inst.Pinned() {
		errs = append(errs, s.inst.Detach())
	}
	s.stopDNS()
	aggs, err := s.inst.DrainAggregates()
	errs = append(errs, err)
	errs = append(errs, s.stream.Stop())
	c, err := s.inst.Counters()
	errs = append(errs, err)
	// Scrapes from now on get the final counts, not the closed maps.
	s.opts.Metrics.SetRing(func() (metrics.Ring, error) { return ring(c), err })
	s.report(aggs)
	s.inst.Close()
	sum.Tracepoint = events.PathCounts{Emitted: c.Emitted[kernel.PathTracepoint], Dropped: c.Dropped[kernel.PathTracepoint], Suppressed: c.Suppressed[kernel.PathTracepoint]}
	sum.LSM = events.PathCounts{Emitted: c.Emitted[kernel.PathLSM], Dropped: c.Dropped[kernel.PathLSM], Suppressed: c.Suppressed[kernel.PathLSM]}
	sum.Socket = events.PathCounts{Emitted: c.Emitted[kernel.PathSocket], Dropped: c.Dropped[kernel.PathSocket], Suppressed: c.Suppressed[kernel.PathSocket]}
	s.renderMu.Lock()
	s.rendered = true
	sum.Received = s.renderer.Received
	sum.Malformed = s.renderer.Malformed
	sum.Rules = s.rules
	for _, n := range c.Unaggregated {
		sum.Unaggregated += n
	}
	// Every record emitted was delivered (unless writing failed: records
	// are then read and discarded).
	if emitted := c.Emitted[0] + c.Emitted[1] + c.Emitted[2]; !s.inst.Pinned() && err == nil && s.writeErr.Load() == nil && sum.Received+sum.Malformed != emitted {
		errs = append(errs, fmt.Errorf("%d records were emitted but %d delivered", emitted, sum.Received+sum.Malformed))
	}
	if err := s.renderer.Flush(); err != nil {
		s.failWrite(err)
	}
	s.renderMu.Unlock()
	return sum, errors.Join(errs...)
}

// CheckPrivileges fails with what to do when the process cannot load BPF.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	const capNetAdmin, capSysAdmin, capBPF, capPerfmon = 12, 21, 39, 38
	if has(capSysAdmin) || (has(capBPF) && has(capNetAdmin) && has(capPerfmon)) {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("root is needed to load BPF programs (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, or CAP_SYS_ADMIN): run it with sudo")
	}
	return errors.New("running as root without CAP_SYS_ADMIN or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN: give it those capabilities")
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// ReloadPinned swaps the policy of a pinned instance (`assay reload`).
func ReloadPinned(name string, p *policy.Policy) error {
	inst, err := kernel.OpenPinned(name)
	if err != nil {
		return err
	}
	defer inst.Close()
	meta, err := inst.Meta()
	if err != nil {
		return err
	}
	// --audit given when the instance was started keeps applying.
	s := &Session{opts: Options{Policy: &policy.Policy{}, Audit: meta.AuditFlag}, inst: inst}
	return s.Reload(p)
}
