package session

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/assaymcp/assay/internal/dns"
	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
)

// ResolvConf is where the default upstream resolvers are read (at start).
var ResolvConf = "/etc/resolv.conf"

// dnsState is the session's resolver (policy v2 host entries, or
// Options.DNSObserve): the kernel redirects the scope's DNS queries to it.
type dnsState struct {
	srv   *dns.Server
	table atomic.Pointer[dns.Table]
	quit  chan struct{}
	done  chan struct{}
}

// wantsDNS reports whether a policy (or the options) need the resolver.
func (o Options) wantsDNS(p *policy.Policy) bool {
	return p.HasHosts() || o.DNSObserve
}

// startDNS starts the resolver for the session's options and policy and
// returns the kernel's view of it. Learned addresses go to the table once
// the instance exists (setTable); until then a query of an allowed name
// fails with SERVFAIL, which nothing in the scope can send yet.
func (s *Session) startDNS(p *policy.Policy) (*kernel.DNS, error) {
	o := s.opts
	if o.Pin != "" {
		return nil, errors.New("network.allow host entries need assay's resolver, which lives in this process: they cannot be pinned (run without --pin)")
	}
	up := p.DNS.Upstream
	if len(up) == 0 {
		var err error
		if up, err = dns.SystemUpstream(ResolvConf); err != nil {
			return nil, fmt.Errorf("dns: no dns.upstream in the policy and %s cannot be read: %w", ResolvConf, err)
		}
	}
	d := &dnsState{quit: make(chan struct{}), done: make(chan struct{})}
	cgroup := uint64(0)
	if len(o.Scopes) == 1 {
		cgroup = o.Scopes[0].ID
	}
	audit := policy.EffectiveMode(p, o.Audit) == policy.ModeAudit
	r, err := dns.NewResolver(dns.Config{
		Upstream: up, Policy: p, Audit: audit, Observe: o.DNSObserve,
		Learn: func(a dns.Answer) error {
			t := d.table.Load()
			if t == nil {
				return errors.New("not ready")
			}
			return t.Learn(a)
		},
		OnAnswer: o.OnDNSAnswer,
		OnRefuse: func(f dns.Refusal) {
			v := events.VerdictBlocked
			if f.Audit {
				v = events.VerdictAudit
			}
			s.Emit(events.Event{Kind: events.KindDNS, Verdict: v, RuleID: policy.DNSDefaultID, CgroupID: cgroup,
				MonoNS: monotonicNow(), Name: f.Name, QType: f.QType})
		},
	})
	if err != nil {
		return nil, err
	}
	if d.srv, err = dns.Listen(r); err != nil {
		return nil, err
	}
	s.dns = d
	v4, v6 := d.srv.Addrs()
	return &kernel.DNS{Resolver4: v4, Resolver6: v6}, nil
}

// setTable connects the resolver to the instance's learned-address maps
// and starts the expiry sweep.
func (s *Session) setTable(p *policy.Policy) {
	d := s.dns
	grace := time.Duration(p.DNS.Grace) * time.Second
	d.table.Store(dns.NewTable(instSink{s.inst}, grace))
	go func() {
		defer close(d.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-d.quit:
				return
			case <-tick.C:
				_, _ = d.table.Load().Sweep()
			}
		}
	}()
}

// stopDNS stops the resolver and the sweep.
func (s *Session) stopDNS() {
	d := s.dns
	if d == nil {
		return
	}
	if d.table.Load() != nil {
		close(d.quit)
		<-d.done
	} else {
		close(d.quit)
	}
	_ = d.srv.Close()
}

// reloadDNS gives the resolver and the learned addresses the new policy
// (after the kernel switched to it).
func (s *Session) reloadDNS(p *policy.Policy, audit bool) error {
	if s.dns == nil {
		return nil
	}
	s.dns.srv.Resolver().SetPolicy(p, audit)
	if t := s.dns.table.Load(); t != nil {
		return t.Reload(p)
	}
	return nil
}

// DNSResolver returns the session's resolver (nil without host entries
// or DNSObserve): its addresses and statistics (benchmarks, tests).
func (s *Session) DNSResolver() *dns.Server {
	if s.dns == nil {
		return nil
	}
	return s.dns.srv
}

// DNSEntries returns what the learned-address table holds.
func (s *Session) DNSEntries() []dns.Entry {
	if s.dns == nil || s.dns.table.Load() == nil {
		return nil
	}
	return s.dns.table.Load().Entries()
}

type instSink struct{ inst *kernel.Instance }

func (k instSink) Put(key dns.Key, id uint32) error {
	return k.inst.PutDNS(kernel.DNSKey{Addr: key.Addr, Port: key.Port, Proto: key.Proto}, id)
}

// Commit invalidates the kernel's verdict cache: a destination judged
// before the change is judged again.
func (k instSink) Commit() error { return k.inst.InvalidateVerdicts() }

func (k instSink) Delete(key dns.Key) error {
	return k.inst.DeleteDNS(kernel.DNSKey{Addr: key.Addr, Port: key.Port, Proto: key.Proto})
}
