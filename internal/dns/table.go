package dns

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/assaymcp/assay/internal/policy"
)

// Key is one learned (address, port, protocol) the kernel allows: Port 0
// means every port, Proto 0 every protocol (as a host entry without ports
// or proto).
type Key struct {
	Addr  netip.Addr // unmapped
	Port  uint16
	Proto uint8
}

// Sink is the kernel side of a Table: the sandbox's map of learned
// addresses (kernel.Instance implements it through an adapter).
type Sink interface {
	Put(k Key, ruleID uint32) error
	Delete(k Key) error
	// Commit makes the changes since the last Commit take effect for
	// every later decision (the kernel's verdict cache is invalidated).
	Commit() error
}

// Table tracks the addresses learned for allowed names and keeps the
// sandbox's kernel map in step: an address learned for several names (a
// CDN) is allowed on the union of their rules' ports; each (name, key)
// pair expires TTL + grace after its last answer, and a key goes from the
// kernel map when no name holds it any more.
type Table struct {
	mu    sync.Mutex
	sink  Sink
	grace time.Duration
	now   func() time.Time
	// keys: key -> name -> (rule id, expiry)
	keys map[Key]map[string]hold
	// put: what the kernel map holds (key -> rule id)
	put map[Key]uint32
	// names: name -> addresses last learned and their expiry (for reload)
	names map[string]learned
	// dirty: the sink changed since its last Commit
	dirty bool
}

type hold struct {
	id      uint32
	expires time.Time
}

type learned struct {
	addrs   []netip.Addr
	expires time.Time
}

// NewTable returns an empty table writing to sink.
func NewTable(sink Sink, grace time.Duration) *Table {
	return &Table{sink: sink, grace: grace, now: time.Now, keys: map[Key]map[string]hold{}, put: map[Key]uint32{}, names: map[string]learned{}}
}

// keysOf expands an answer's addresses under rules.
func keysOf(addrs []netip.Addr, rules []policy.NetRule) map[Key]uint32 {
	out := map[Key]uint32{}
	for _, a := range addrs {
		for _, r := range rules {
			ports := r.Ports
			if len(ports) == 0 {
				ports = []uint16{0}
			}
			for _, p := range ports {
				k := Key{Addr: a.Unmap(), Port: p, Proto: uint8(r.Proto)}
				if _, ok := out[k]; !ok {
					out[k] = r.ID // the first rule in policy order names it
				}
			}
		}
	}
	return out
}

// Learn records an answer's addresses under its rules and writes them to
// the kernel map before returning (Config.Learn).
func (t *Table) Learn(a Answer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp := t.now().Add(a.TTL + t.grace)
	if l, ok := t.names[a.Name]; ok && l.expires.After(exp) {
		exp = l.expires
	}
	addrs := a.Addrs
	if l, ok := t.names[a.Name]; ok {
		// Keep the addresses of the other family (an A and an AAAA
		// query learn one each).
		for _, old := range l.addrs {
			if !containsAddr(addrs, old) {
				addrs = append(addrs, old)
			}
		}
	}
	t.names[a.Name] = learned{addrs: addrs, expires: exp}
	for k, id := range keysOf(a.Addrs, a.Rules) {
		if t.keys[k] == nil {
			t.keys[k] = map[string]hold{}
		}
		t.keys[k][a.Name] = hold{id: id, expires: exp}
		if err := t.sync(k); err != nil {
			return err
		}
	}
	return t.commit()
}

// commit commits the sink's changes, if any.
func (t *Table) commit() error {
	if !t.dirty {
		return nil
	}
	if err := t.sink.Commit(); err != nil {
		return err
	}
	t.dirty = false
	return nil
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// sync writes key k's state to the kernel: the smallest rule id of the
// names holding it, or nothing.
func (t *Table) sync(k Key) error {
	holders := t.keys[k]
	if len(holders) == 0 {
		delete(t.keys, k)
		if _, ok := t.put[k]; !ok {
			return nil
		}
		delete(t.put, k)
		t.dirty = true
		return t.sink.Delete(k)
	}
	var id uint32
	for _, h := range holders {
		if id == 0 || h.id < id {
			id = h.id
		}
	}
	if cur, ok := t.put[k]; ok && cur == id {
		return nil
	}
	t.dirty = true
	if err := t.sink.Put(k, id); err != nil {
		return err
	}
	t.put[k] = id
	return nil
}

// Sweep removes every expired (name, key) pair, and the keys no name holds
// any more from the kernel map. It returns how many keys left the map.
func (t *Table) Sweep() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	removed := 0
	var first error
	for k, holders := range t.keys {
		for name, h := range holders {
			if !h.expires.After(now) {
				delete(holders, name)
			}
		}
		if len(holders) == 0 {
			removed++
		}
		if err := t.sync(k); err != nil && first == nil {
			first = err
		}
	}
	for name, l := range t.names {
		if !l.expires.After(now) {
			delete(t.names, name)
		}
	}
	if err := t.commit(); err != nil && first == nil {
		first = err
	}
	return removed, first
}

// Reload re-judges every learned name under p: names still allowed keep
// their addresses (under their new rules and ports), the others lose them.
func (t *Table) Reload(p *policy.Policy) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	want := map[Key]map[string]hold{}
	for name, l := range t.names {
		rules := p.HostRules(name)
		if len(rules) == 0 {
			delete(t.names, name)
			continue
		}
		for k, id := range keysOf(l.addrs, rules) {
			if want[k] == nil {
				want[k] = map[string]hold{}
			}
			want[k][name] = hold{id: id, expires: l.expires}
		}
	}
	old := t.keys
	t.keys = want
	var first error
	// New keys first, then the ones that went: no allowed name loses its
	// addresses in between.
	for k := range want {
		if err := t.sync(k); err != nil && first == nil {
			first = err
		}
	}
	for k := range old {
		if _, ok := want[k]; !ok {
			if err := t.sync(k); err != nil && first == nil {
				first = err
			}
		}
	}
	if err := t.commit(); err != nil && first == nil {
		first = err
	}
	return first
}

// Entry is one learned key, for listings and tests.
type Entry struct {
	Key    Key
	RuleID uint32
	Names  []string
}

// Entries returns what the kernel map holds, sorted by address.
func (t *Table) Entries() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, len(t.put))
	for k, id := range t.put {
		e := Entry{Key: k, RuleID: id}
		for n := range t.keys[k] {
			e.Names = append(e.Names, n)
		}
		sort.Strings(e.Names)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.Addr != b.Addr {
			return a.Addr.Less(b.Addr)
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Proto < b.Proto
	})
	return out
}

// SystemUpstream returns the nameservers of /etc/resolv.conf (the default
// of dns.upstream), read once, at start.
func SystemUpstream(path string) ([]netip.AddrPort, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		port := uint16(53)
		if p, err := netipPort(cc.Port); err == nil {
			port = p
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), port))
	}
	return out, nil
}

func netipPort(s string) (uint16, error) {
	ap, err := netip.ParseAddrPort("0.0.0.0:" + s)
	return ap.Port(), err
}
