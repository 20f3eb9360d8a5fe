// Package dns is assay's own resolver: the cgroup programs redirect every
// DNS query of a sandbox (port 53, UDP and TCP, IPv4 and IPv6) to a
// Server, which answers it under the policy's host entries.
//
//   - A name some network.allow host entry covers is forwarded to the
//     upstream; the A and AAAA answers (also at the end of CNAME chains)
//     are handed to Config.Learn - which writes them into the sandbox's
//     allow map - before the answer is released, so a connect that follows
//     the answer never races the map update. When Learn fails the client
//     gets SERVFAIL (fail closed).
//   - A name no host entry covers is never forwarded (no exfiltration
//     through query names): it is answered NXDOMAIN or REFUSED (dns.refuse)
//     and reported through Config.OnRefuse. In audit mode it is forwarded
//     and answered all the same, reported as what would have been refused,
//     and its addresses are not learned.
//   - Observe mode (Config.Observe, for `assay learn`): every name is
//     allowed and forwarded, and Config.OnAnswer sees every answer.
//
// Only the question leaves for the upstream: the query is rebuilt (a fresh
// id, the question, RD, and EDNS0 with the client's DO bit), so nothing
// else a client puts in a message reaches the upstream. An upstream that
// does not answer within Config.Timeout gives SERVFAIL. Malformed
// messages get FORMERR (or nothing when not even the header is there);
// queries beyond Config.Rate per second are answered REFUSED without
// being looked at further; at most Config.InFlight queries are forwarded
// at once (more are dropped, as a busy resolver does).
package dns

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/assaymcp/assay/internal/policy"
)

// Defaults of Config.
const (
	DefaultTimeout  = 2 * time.Second
	DefaultRate     = 1000 // queries per second per sandbox
	DefaultInFlight = 256
	// MaxChain is the longest CNAME chain followed in an answer.
	MaxChain = 16
	// MaxTTL caps the TTL an upstream gives a learned address.
	MaxTTL = 24 * time.Hour
)

// Answer is an answered query of an allowed (or, in observe mode, any)
// name.
type Answer struct {
	Name   string           // the query name, lower case, no trailing dot
	QType  uint16           // the query type (miekg/dns Type* values: 1 A, 28 AAAA, ...)
	Rcode  int              // the upstream's
	CNAMEs []string         // the chain followed from Name, in order (normalised)
	Addrs  []netip.Addr     // the A and AAAA records at the end of the chain
	TTL    time.Duration    // the smallest TTL along the chain and the addresses
	Rules  []policy.NetRule // the host entries that allow Name (none in observe mode when no entry does)
	TCP    bool             // the client asked over TCP
}

// Refusal is a query for a name no host entry covers.
type Refusal struct {
	Name  string // lower case, no trailing dot (as asked, when not a valid name)
	QType uint16
	Audit bool // audit mode: forwarded and answered all the same
	TCP   bool
}

// Config configures a Server.
type Config struct {
	// Upstream are the resolvers asked, in order, until one answers.
	Upstream []netip.AddrPort
	// Policy holds the host entries (policy.HostRules) and dns.refuse.
	Policy *policy.Policy
	// Audit: names that are not allowed are forwarded and answered too.
	Audit bool
	// Observe: every name is allowed and forwarded (assay learn).
	Observe bool
	// Learn is called with every answer of an allowed name before it is
	// released; an error answers SERVFAIL. Not called for answers without
	// rules (observe or audit mode).
	Learn func(Answer) error
	// OnAnswer sees every answer released to the sandbox (after Learn).
	OnAnswer func(Answer)
	// OnRefuse sees every refused (or, in audit mode, would-be refused)
	// query.
	OnRefuse func(Refusal)
	// Timeout bounds one query's forwarding, all upstreams together
	// (DefaultTimeout when 0).
	Timeout time.Duration
	// Rate is the most queries per second answered (DefaultRate when 0);
	// Burst the bucket's size (Rate when 0).
	Rate, Burst int
	// InFlight bounds the queries being forwarded at once (DefaultInFlight
	// when 0).
	InFlight int
}

// Stats counts what a Server did.
type Stats struct {
	Queries, Forwarded, Refused, RateLimited, Malformed, ServFail, Dropped uint64
}

// Resolver answers DNS messages; Server puts one on sockets.
type Resolver struct {
	mu       sync.RWMutex
	cfg      Config
	limiter  *rate.Limiter
	inflight chan struct{}
	exchange func(ctx context.Context, q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error)

	queries, forwarded, refused, limited, malformed, servfail, dropped atomic.Uint64
}

// NewResolver returns a resolver for cfg.
func NewResolver(cfg Config) (*Resolver, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.Rate
	}
	if cfg.InFlight == 0 {
		cfg.InFlight = DefaultInFlight
	}
	if len(cfg.Upstream) == 0 {
		return nil, errors.New("dns: no upstream resolver (set dns.upstream, or give /etc/resolv.conf a nameserver)")
	}
	if cfg.Policy == nil && !cfg.Observe {
		return nil, errors.New("dns: no policy")
	}
	r := &Resolver{cfg: cfg, limiter: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst), inflight: make(chan struct{}, cfg.InFlight)}
	r.exchange = exchange
	return r, nil
}

// SetPolicy swaps the policy (a reload) and the audit mode.
func (r *Resolver) SetPolicy(p *policy.Policy, audit bool) {
	r.mu.Lock()
	r.cfg.Policy, r.cfg.Audit = p, audit
	r.mu.Unlock()
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{Queries: r.queries.Load(), Forwarded: r.forwarded.Load(), Refused: r.refused.Load(),
		RateLimited: r.limited.Load(), Malformed: r.malformed.Load(), ServFail: r.servfail.Load(), Dropped: r.dropped.Load()}
}

// Handle answers one DNS message from the sandbox (tcp: it came over
// TCP). It returns the answer
// to send, or nil to send nothing. It never panics on any input.
func (r *Resolver) Handle(ctx context.Context, msg []byte, tcp bool) []byte {
	r.queries.Add(1)
	if len(msg) < 12 {
		r.malformed.Add(1)
		return nil // not even a header to answer
	}
	if msg[2]&0x80 != 0 {
		r.malformed.Add(1)
		return nil // a response: never answer one (no reflection loops)
	}
	if !r.limiter.Allow() {
		r.limited.Add(1)
		return headerOnly(msg, mdns.RcodeRefused)
	}
	req := new(mdns.Msg)
	if err := req.Unpack(msg); err != nil {
		r.malformed.Add(1)
		return headerOnly(msg, mdns.RcodeFormatError)
	}
	if req.Opcode != mdns.OpcodeQuery {
		return reply(req, mdns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 || len(req.Answer) != 0 || len(req.Ns) != 0 {
		r.malformed.Add(1)
		return reply(req, mdns.RcodeFormatError)
	}
	q := req.Question[0]
	name := policy.NormalizeName(q.Name)
	r.mu.RLock()
	cfg := r.cfg
	r.mu.RUnlock()
	var rules []policy.NetRule
	if cfg.Policy != nil && q.Qclass == mdns.ClassINET {
		rules = cfg.Policy.HostRules(name)
	}
	if len(rules) == 0 && !cfg.Observe {
		r.refused.Add(1)
		if cfg.OnRefuse != nil {
			cfg.OnRefuse(Refusal{Name: name, QType: q.Qtype, Audit: cfg.Audit, TCP: tcp})
		}
		if !cfg.Audit {
			rc := mdns.RcodeNameError
			if cfg.Policy.DNS.Refuse == policy.RefuseRefused {
				rc = mdns.RcodeRefused
			}
			return reply(req, rc)
		}
	}
	select {
	case r.inflight <- struct{}{}:
		defer func() { <-r.inflight }()
	default:
		r.dropped.Add(1)
		return nil
	}
	resp, err := r.forward(ctx, cfg, req, tcp)
	if err != nil {
		r.servfail.Add(1)
		return reply(req, mdns.RcodeServerFailure)
	}
	r.forwarded.Add(1)
	ans := answerOf(name, q.Qtype, resp)
	ans.Rules, ans.TCP = rules, tcp
	if len(rules) > 0 && cfg.Learn != nil && len(ans.Addrs) > 0 {
		if err := cfg.Learn(ans); err != nil {
			r.servfail.Add(1)
			return reply(req, mdns.RcodeServerFailure)
		}
	}
	if cfg.OnAnswer != nil {
		cfg.OnAnswer(ans)
	}
	resp.Id = req.Id
	resp.Question = req.Question
	resp.Response = true
	resp.Compress = true
	// The client's EDNS0 size bounds a UDP answer (512 without one).
	if !tcp {
		size := mdns.MinMsgSize
		if o := req.IsEdns0(); o != nil && int(o.UDPSize()) > size {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	out, err := resp.Pack()
	if err != nil {
		r.servfail.Add(1)
		return reply(req, mdns.RcodeServerFailure)
	}
	return out
}

// forward asks the upstreams in order until one answers, within the
// timeout.
func (r *Resolver) forward(ctx context.Context, cfg Config, req *mdns.Msg, tcp bool) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.Id = randomID()
	q.RecursionDesired = req.RecursionDesired
	q.CheckingDisabled = req.CheckingDisabled
	q.Question = []mdns.Question{req.Question[0]}
	do := false
	if o := req.IsEdns0(); o != nil {
		do = o.Do()
	}
	q.SetEdns0(1232, do)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var errs []error
	for i, up := range cfg.Upstream {
		// Each upstream gets an equal share of what is left.
		left := time.Until(deadline(ctx))
		if left <= 0 {
			break
		}
		actx, acancel := context.WithTimeout(ctx, left/time.Duration(len(cfg.Upstream)-i))
		resp, err := r.exchange(actx, q, up, tcp)
		acancel()
		if err == nil && resp != nil && resp.Id == q.Id && resp.Response {
			if !tcp && resp.Truncated {
				// Ask again over TCP for the whole answer.
				tctx, tcancel := context.WithTimeout(ctx, time.Until(deadline(ctx)))
				full, terr := r.exchange(tctx, q, up, true)
				tcancel()
				if terr == nil && full != nil && full.Id == q.Id {
					return full, nil
				}
			}
			return resp, nil
		}
		if err == nil {
			err = errors.New("mismatched answer")
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	if len(errs) == 0 {
		errs = append(errs, context.DeadlineExceeded)
	}
	return nil, errors.Join(errs...)
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func exchange(ctx context.Context, q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
	c := &mdns.Client{Net: "udp", UDPSize: 1232}
	if tcp {
		c.Net = "tcp"
	}
	if d, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(d)
	}
	resp, _, err := c.ExchangeContext(ctx, q, up.String())
	return resp, err
}

// answerOf follows the CNAME chain from name and collects the addresses
// at its end.
func answerOf(name string, qtype uint16, resp *mdns.Msg) Answer {
	a := Answer{Name: name, QType: qtype, Rcode: resp.Rcode}
	cur := name
	var ttl uint32 = ^uint32(0)
	seen := map[string]bool{cur: true}
	for range MaxChain {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*mdns.CNAME); ok && policy.NormalizeName(c.Hdr.Name) == cur {
				next = policy.NormalizeName(c.Target)
				ttl = min(ttl, c.Hdr.Ttl)
				break
			}
		}
		if next == "" || seen[next] {
			break
		}
		seen[next] = true
		a.CNAMEs = append(a.CNAMEs, next)
		cur = next
	}
	for _, rr := range resp.Answer {
		var addr netip.Addr
		switch v := rr.(type) {
		case *mdns.A:
			addr, _ = netip.AddrFromSlice(v.A.To4())
		case *mdns.AAAA:
			addr, _ = netip.AddrFromSlice(v.AAAA.To16())
		default:
			continue
		}
		if !addr.IsValid() || policy.NormalizeName(rr.Header().Name) != cur {
			continue
		}
		a.Addrs = append(a.Addrs, addr.Unmap())
		ttl = min(ttl, rr.Header().Ttl)
	}
	if ttl == ^uint32(0) {
		ttl = 0
	}
	a.TTL = min(time.Duration(ttl)*time.Second, MaxTTL)
	return a
}

// reply answers req with an empty message of rcode.
func reply(req *mdns.Msg, rcode int) []byte {
	m := new(mdns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(1232, o.Do())
	}
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

// headerOnly answers a message that cannot be (or is not) parsed: its id
// and opcode, QR set, no sections.
func headerOnly(msg []byte, rcode int) []byte {
	out := make([]byte, 12)
	copy(out[:2], msg[:2])
	out[2] = 0x80 | msg[2]&0x78 // QR, the opcode
	out[3] = byte(rcode & 0xf)
	return out
}

func randomID() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}
