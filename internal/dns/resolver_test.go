package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/assaymcp/assay/internal/dns/dnstest"
	"github.com/assaymcp/assay/internal/policy"
)

func testPolicy(t testing.TB, extra string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte(`version: 2
network:
  default: deny
  allow:
    - {host: ok.test, ports: [8080], id: 30}
    - {host: "*.wild.test", ports: [443, 8443], proto: tcp, id: 31}
    - {host: alias.test, id: 32}
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var records = []string{
	"ok.test. 60 IN A 127.0.0.11",
	"ok.test. 60 IN AAAA ::1",
	"a.b.wild.test. 30 IN A 127.0.0.12",
	"wild.test. 30 IN A 127.0.0.13",
	"alias.test. 5 IN CNAME c1.elsewhere.test.",
	"c1.elsewhere.test. 50 IN CNAME c2.elsewhere.test.",
	"c2.elsewhere.test. 40 IN A 127.0.0.14",
	"secret.test. 60 IN A 127.0.0.15",
}

type learnLog struct {
	mu  sync.Mutex
	got []Answer
}

func (l *learnLog) learn(a Answer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, a)
	return nil
}

func query(t *testing.T, srv netip.AddrPort, name string, qtype uint16, tcp bool) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: "udp", Timeout: 10 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	resp, _, err := c.Exchange(m, srv.String())
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return resp
}

func TestResolver(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", records, "slow.ok2.test.")
	var learned learnLog
	var refusals []Refusal
	var mu sync.Mutex
	p := testPolicy(t, "    - {host: slow.ok2.test, id: 33}\n")
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{up.Addr}, Policy: p, Learn: learned.learn, Timeout: 300 * time.Millisecond,
		OnRefuse: func(f Refusal) { mu.Lock(); refusals = append(refusals, f); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v4, _ := s.Addrs()

	// Allowed: forwarded, learned before the answer came back.
	resp := query(t, v4, "OK.test.", mdns.TypeA, false)
	if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 || resp.Question[0].Name != "OK.test." {
		t.Fatalf("answer %v", resp)
	}
	if len(learned.got) != 1 || learned.got[0].Name != "ok.test" || learned.got[0].Addrs[0] != netip.MustParseAddr("127.0.0.11") || learned.got[0].Rules[0].ID != 30 {
		t.Fatalf("learned %+v", learned.got)
	}
	// AAAA over TCP.
	resp = query(t, v4, "ok.test.", mdns.TypeAAAA, true)
	if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 || learned.got[1].Addrs[0] != netip.MustParseAddr("::1") || !learned.got[1].TCP {
		t.Fatalf("AAAA %v; learned %+v", resp, learned.got)
	}
	// Wildcard at depth, not the bare name.
	if resp = query(t, v4, "a.b.wild.test.", mdns.TypeA, false); resp.Rcode != mdns.RcodeSuccess {
		t.Fatalf("wildcard depth: %v", resp)
	}
	if resp = query(t, v4, "wild.test.", mdns.TypeA, false); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("bare name of a wildcard: %v", resp)
	}
	// CNAME chain: the addresses at its end, the smallest TTL.
	query(t, v4, "alias.test.", mdns.TypeA, false)
	last := learned.got[len(learned.got)-1]
	if last.Name != "alias.test" || !slices.Equal(last.CNAMEs, []string{"c1.elsewhere.test", "c2.elsewhere.test"}) ||
		len(last.Addrs) != 1 || last.Addrs[0] != netip.MustParseAddr("127.0.0.14") || last.TTL != 5*time.Second {
		t.Fatalf("CNAME chain %+v", last)
	}
	// Not allowed: never forwarded, NXDOMAIN, reported.
	if resp = query(t, v4, "secret.test.", mdns.TypeA, false); resp.Rcode != mdns.RcodeNameError || len(resp.Answer) != 0 {
		t.Fatalf("secret: %v", resp)
	}
	if up.WasAsked("secret.test") || up.WasAsked("wild.test") {
		t.Fatalf("a name not allowed reached the upstream: %v", up.Asked())
	}
	mu.Lock()
	if len(refusals) != 2 || refusals[1].Name != "secret.test" || refusals[1].QType != mdns.TypeA || refusals[1].Audit {
		t.Fatalf("refusals %+v", refusals)
	}
	mu.Unlock()
	// An upstream that does not answer: SERVFAIL, in bounded time.
	start := time.Now()
	if resp = query(t, v4, "slow.ok2.test.", mdns.TypeA, false); resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("silent upstream: %v", resp)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("SERVFAIL after %v", d)
	}
	// refuse: refused, and a reload to it.
	r.SetPolicy(testPolicy(t, "dns: {refuse: refused}\n"), false)
	if resp = query(t, v4, "secret.test.", mdns.TypeA, true); resp.Rcode != mdns.RcodeRefused {
		t.Fatalf("refuse: refused: %v", resp)
	}
	// Audit: answered, reported as audit, not learned.
	n := len(learned.got)
	r.SetPolicy(p, true)
	if resp = query(t, v4, "secret.test.", mdns.TypeA, false); resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("audit: %v", resp)
	}
	if len(learned.got) != n || !refusals[len(refusals)-1].Audit {
		t.Fatalf("audit learned %+v / refusals %+v", learned.got[n:], refusals)
	}
}

func TestLearnFailureIsServfail(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", records)
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{up.Addr}, Policy: testPolicy(t, ""),
		Learn: func(Answer) error { return errors.New("map full") }})
	if err != nil {
		t.Fatal(err)
	}
	m := new(mdns.Msg)
	m.SetQuestion("ok.test.", mdns.TypeA)
	b, _ := m.Pack()
	out := new(mdns.Msg)
	if err := out.Unpack(r.Handle(context.Background(), b, false)); err != nil || out.Rcode != mdns.RcodeServerFailure || len(out.Answer) != 0 {
		t.Fatalf("%v %v", out, err)
	}
}

// TestObserve: the API `assay learn` uses: every name forwarded, every
// answer seen.
func TestObserve(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", records)
	var got []Answer
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{up.Addr}, Observe: true, OnAnswer: func(a Answer) { got = append(got, a) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"secret.test.", "alias.test."} {
		m := new(mdns.Msg)
		m.SetQuestion(n, mdns.TypeA)
		b, _ := m.Pack()
		r.Handle(context.Background(), b, false)
	}
	if len(got) != 2 || got[0].Name != "secret.test" || got[0].Addrs[0] != netip.MustParseAddr("127.0.0.15") || got[1].Addrs[0] != netip.MustParseAddr("127.0.0.14") {
		t.Fatalf("observed %+v", got)
	}
}

// TestBadInput: malformed, truncated, responses, compression loops, many
// questions, and a flood beyond the rate: no crash, the right answers,
// and the resolver keeps answering.
func TestBadInput(t *testing.T) {
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Policy: testPolicy(t, ""), Rate: 50, Burst: 50})
	if err != nil {
		t.Fatal(err)
	}
	r.exchange = func(ctx context.Context, q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
		m := new(mdns.Msg)
		m.SetReply(q)
		return m, nil
	}
	ctx := context.Background()
	loop := []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1} // the name points at itself
	two := new(mdns.Msg)
	two.Question = []mdns.Question{{Name: "ok.test.", Qtype: 1, Qclass: 1}, {Name: "ok.test.", Qtype: 28, Qclass: 1}}
	twoB, _ := two.Pack()
	for name, tc := range map[string]struct {
		in    []byte
		rcode int // -1: no answer
	}{
		"empty":            {nil, -1},
		"short":            {[]byte{1, 2, 3}, -1},
		"response":         {[]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, -1},
		"truncated":        {[]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'o', 'k'}, mdns.RcodeFormatError},
		"compression loop": {loop, mdns.RcodeFormatError},
		"two questions":    {twoB, mdns.RcodeFormatError},
	} {
		out := r.Handle(ctx, tc.in, false)
		if tc.rcode < 0 {
			if out != nil {
				t.Errorf("%s: answered %x", name, out)
			}
			continue
		}
		if len(out) < 12 || int(out[3]&0xf) != tc.rcode || out[2]&0x80 == 0 {
			t.Errorf("%s: answer %x, want rcode %d", name, out, tc.rcode)
		}
	}
	// A flood: beyond the bucket, REFUSED without parsing.
	m := new(mdns.Msg)
	m.SetQuestion("ok.test.", mdns.TypeA)
	b, _ := m.Pack()
	refused := 0
	for range 200 {
		out := r.Handle(ctx, b, false)
		if len(out) >= 12 && out[3]&0xf == mdns.RcodeRefused {
			refused++
		}
	}
	if refused < 100 || r.Stats().RateLimited == 0 {
		t.Fatalf("%d of 200 refused; stats %+v", refused, r.Stats())
	}
}

// TestServerTCPLimits: a TCP client that sends half a message and one that
// sends garbage do not stop others from being answered.
func TestServerTCPLimits(t *testing.T) {
	up := dnstest.Start(t, "127.0.0.1", records)
	r, err := NewResolver(Config{Upstream: []netip.AddrPort{up.Addr}, Policy: testPolicy(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v4, _ := s.Addrs()
	half, err := net.Dial("tcp", v4.String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	_, _ = half.Write([]byte{0, 40, 1, 2, 3})
	junk, err := net.Dial("tcp", v4.String())
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	_, _ = junk.Write([]byte{0, 3, 1, 2, 3})
	if resp := query(t, v4, "ok.test.", mdns.TypeA, true); resp.Rcode != mdns.RcodeSuccess {
		t.Fatalf("%v", resp)
	}
}

func TestTable(t *testing.T) {
	sink := &mapSink{m: map[Key]uint32{}}
	tb := NewTable(sink, 2*time.Second)
	now := time.Unix(1000, 0)
	tb.now = func() time.Time { return now }
	p := testPolicy(t, "    - {host: cdn.test, ports: [9], id: 34}\n")
	shared := netip.MustParseAddr("127.0.0.20")
	learn := func(name string, ttl time.Duration, addrs ...netip.Addr) {
		t.Helper()
		if err := tb.Learn(Answer{Name: name, Addrs: addrs, TTL: ttl, Rules: p.HostRules(name)}); err != nil {
			t.Fatal(err)
		}
	}
	learn("ok.test", 10*time.Second, shared)
	learn("cdn.test", time.Second, shared)
	// The union of both rules' ports.
	want := map[Key]uint32{{shared, 8080, 0}: 30, {shared, 9, 0}: 34}
	if !sink.equal(want) || sink.commits != 2 {
		t.Fatalf("shared: %v, %d commits (want 2: one per answer)", sink.m, sink.commits)
	}
	now = now.Add(4 * time.Second) // cdn.test expired (1 s + 2 s grace)
	if n, err := tb.Sweep(); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if !sink.equal(map[Key]uint32{{shared, 8080, 0}: 30}) {
		t.Fatalf("after expiry: %v", sink.m)
	}
	learn("x.wild.test", 60*time.Second, netip.MustParseAddr("::1"))
	// Reload: ok.test is no longer allowed, *.wild.test moves to port 9443.
	p2, err := policy.Parse("p.yaml", []byte("version: 2\nnetwork:\n  default: deny\n  allow:\n    - {host: \"*.wild.test\", ports: [9443], id: 40}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Reload(p2); err != nil {
		t.Fatal(err)
	}
	if !sink.equal(map[Key]uint32{{netip.MustParseAddr("::1"), 9443, 0}: 40}) {
		t.Fatalf("after reload: %v", sink.m)
	}
	now = now.Add(time.Hour)
	if _, err := tb.Sweep(); err != nil || len(sink.m) != 0 || len(tb.Entries()) != 0 {
		t.Fatalf("after everything expired: %v %v", sink.m, err)
	}
}

type mapSink struct {
	m       map[Key]uint32
	commits int
}

func (s *mapSink) Commit() error { s.commits++; return nil }

func (s *mapSink) Put(k Key, id uint32) error { s.m[k] = id; return nil }
func (s *mapSink) Delete(k Key) error {
	if _, ok := s.m[k]; !ok {
		return errors.New("delete of a missing key")
	}
	delete(s.m, k)
	return nil
}
func (s *mapSink) equal(w map[Key]uint32) bool {
	if len(w) != len(s.m) {
		return false
	}
	for k, v := range w {
		if s.m[k] != v {
			return false
		}
	}
	return true
}
