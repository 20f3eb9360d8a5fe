package session

// Events from the kernel to the renderer: each record decoded, enriched and
// written, write failures, and the kernel's aggregates.

import (
	"net/netip"
	"time"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
)

// rulePaths indexes a policy's file rules by id.
type rulePaths struct {
	p     *policy.Policy
	paths map[uint32]string
}

// rulePath is the policy path of file rule id, for a file event's
// rule_path: a map built once per policy (a linear scan of the rules for
// every event cost ~0.1 ms per event with 100k file rules).
func (s *Session) rulePath(id uint32) string {
	p := s.policy()
	rp := s.paths.Load()
	if rp == nil || rp.p != p {
		rp = &rulePaths{p: p, paths: make(map[uint32]string, len(p.FileDeny))}
		for _, f := range p.FileDeny {
			rp.paths[f.ID] = f.Path
		}
		s.paths.Store(rp)
	}
	return rp.paths[id]
}

// Emit writes an event that did not come from the kernel (a tool call
// refused by `assay run --mcp`) among the kernel's, and flushes it.
func (s *Session) Emit(e events.Event) {
	s.renderMu.Lock()
	defer s.renderMu.Unlock()
	if s.writeErr.Load() != nil || s.rendered || s.renderer == nil {
		return
	}
	s.renderer.Anchor(time.Now(), monotonicNow())
	err := s.renderer.Event(e)
	if err == nil {
		err = s.renderer.Flush()
	}
	if err != nil {
		s.failWrite(err)
	}
}

func (s *Session) record(raw []byte, idle bool) {
	if s.opts.Observe != nil {
		if e, err := events.Decode(raw); err == nil {
			s.opts.Observe(e)
		}
	}
	s.renderMu.Lock()
	defer s.renderMu.Unlock()
	if s.writeErr.Load() != nil {
		return
	}
	if s.opts.Judge != nil {
		if s.judged(raw, idle) {
			return
		}
	}
	// Re-pair the clocks now and then, so that event times follow a
	// stepped wall clock (the pairing is per renderer, see events.Anchor).
	if s.sinceAnchor++; idle || s.sinceAnchor >= 4096 {
		s.sinceAnchor = 0
		s.renderer.Anchor(time.Now(), monotonicNow())
	}
	err := s.renderer.Record(raw)
	if err == nil && idle {
		err = s.renderer.Flush()
	}
	if err != nil {
		s.failWrite(err)
	}
}

// failWrite records the first error writing events.
func (s *Session) failWrite(err error) {
	if !s.writeErr.CompareAndSwap(nil, &err) {
		return
	}
	close(s.writeFailedChan())
	if s.opts.OnWriteErr != nil {
		s.opts.OnWriteErr(err)
	}
}

func (s *Session) writeFailedChan() chan struct{} {
	s.writeFailedOnce.Do(func() { s.writeFailed = make(chan struct{}) })
	return s.writeFailed
}

// WriteFailed is closed when writing an event first fails (WriteErr then
// says why): a monitor waits on it instead of polling WriteErr.
func (s *Session) WriteFailed() <-chan struct{} { return s.writeFailedChan() }

func (s *Session) policy() *policy.Policy {
	if p := s.pol.Load(); p != nil {
		return p
	}
	return s.opts.Policy
}

// WriteErr is the first error writing events, if any.
func (s *Session) WriteErr() error {
	if p := s.writeErr.Load(); p != nil {
		return *p
	}
	return nil
}

// startAggregates starts the loop that reports the kernel's aggregates of
// events not emitted one by one, every AggInterval, and sweeps the rate
// budgets of past seconds.
func (s *Session) startAggregates() {
	s.quit, s.done = make(chan struct{}), make(chan struct{})
	every := s.opts.AggInterval
	if every <= 0 {
		every = time.Second
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
			_, _ = s.inst.SweepRate(monotonicNow() / uint64(time.Second))
			// Swap the tables only when something was not emitted since
			// the last time: a swap waits for RCU grace periods.
			c, err := s.inst.Counters()
			if err != nil {
				continue
			}
			var unseen uint64
			for p := range kernel.NumPaths {
				unseen += c.Suppressed[p] + c.Dropped[p]
			}
			if unseen == s.unseen {
				continue
			}
			s.unseen = unseen
			aggs, _ := s.inst.DrainAggregates()
			s.report(aggs)
		}
	}()
}

// report writes aggregates and adds them to the per-rule counts.
func (s *Session) report(aggs []kernel.Aggregate) {
	if len(aggs) == 0 {
		return
	}
	out := make([]events.Aggregate, len(aggs))
	for i, a := range aggs {
		out[i] = aggregateEvent(a)
	}
	s.renderMu.Lock()
	defer s.renderMu.Unlock()
	s.rules = events.Tally(s.rules, out)
	if s.writeErr.Load() != nil {
		return
	}
	for _, a := range out {
		if err := s.renderer.Aggregate(a); err != nil {
			s.failWrite(err)
			return
		}
	}
	if err := s.renderer.Flush(); err != nil {
		s.failWrite(err)
	}
}

func aggregateEvent(a kernel.Aggregate) events.Aggregate {
	e := events.Aggregate{
		Event: events.Event{Kind: events.Kind(a.Kind), Verdict: events.Verdict(a.Verdict), RuleID: a.RuleID,
			PID: a.PID, TID: a.TID, CgroupID: a.CgroupID, MonoNS: a.FirstNS, Comm: a.Comm},
		Unrecorded: a.Unrecorded, Suppressed: a.Suppressed, Dropped: a.Dropped, LastNS: a.LastNS,
	}
	switch e.Kind {
	case events.KindConnect, events.KindSendmsg:
		e.Family, e.Protocol, e.Port, e.Mapped, e.Unspec = a.Family, a.Protocol, a.Port, a.Mapped, events.Unspec(a.Unspec)
		if a.Family == events.AFInet {
			e.Addr = netip.AddrFrom4([4]byte(a.Addr[:4]))
		} else {
			e.Addr = netip.AddrFrom16(a.Addr)
		}
	case events.KindFile:
		e.Dev, e.Ino, e.Op = a.Dev, a.Ino, events.FileOp(a.Op)
	}
	return e
}
