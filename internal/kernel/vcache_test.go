package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/testenv"
)

// vcacheEntry mirrors struct assay_vcache_entry (bpf/vcache.h).
type vcacheEntry struct {
	Seq   uint64
	Epoch uint64
	Addr  [4]uint32
	Port  uint16
	Proto uint8
	Fam   uint8
	Rule  uint32
}

// vcacheSlot is vcache_slot (bpf/vcache.h).
func vcacheSlot(a [4]uint32, fam uint8, port uint16, proto uint8) uint32 {
	h := a[0] ^ a[1] ^ a[2] ^ a[3] ^ uint32(port)<<16 ^ uint32(proto)<<8 ^ uint32(fam)
	h *= 0x9e3779b1
	h ^= h >> 15
	h *= 0x85ebca6b
	return h >> (32 - 10)
}

// TestVerdictCacheExact: the socket path's verdict cache never answers
// with a verdict of another policy. A process in the scope sends UDP
// datagrams to loopback (IPv4 and IPv6) while the policy is reloaded back
// and forth between allowing them, denying their ports and denying their
// prefixes, so each generation slot is reused with other rules; every
// send gets the new policy's verdict, twice in a row (the second from the
// cache). The cache is shown to be filled and consulted: after the first
// sends it holds the destination's verdict under the current epoch, and a
// forged entry of the current epoch that says "allowed" for a denied
// destination is obeyed, until InvalidateVerdicts starts a new epoch.
func TestVerdictCacheExact(t *testing.T) {
	testenv.Privileged(t)
	cg := assaytest.NewCgroup(t)
	u4 := assaytest.ListenUDP(t, "127.0.0.1:0")
	u6 := assaytest.ListenUDP(t, "[::1]:0")
	allow := Rules{DenyPorts: map[uint16]uint32{9: 1}}
	denyPorts := Rules{DenyPorts: map[uint16]uint32{u4.Port(): 7, u6.Port(): 8}}
	denyNets := Rules{DenyCIDRs: []CIDR{{netip.MustParsePrefix("127.0.0.0/8"), 11}, {netip.MustParsePrefix("::1/128"), 12}}}

	inst, err := Load(Config{Rules: allow, Scopes: []Scope{{Path: cg.Path, ID: cg.ID, Level: cg.Level}}})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if err := inst.Attach(); err != nil {
		t.Fatal(err)
	}
	send := func(step string, want bool) {
		t.Helper()
		for i := 0; i < 2; i++ {
			for _, c := range []struct{ fam, addr string }{{"udp4", u4.String()}, {"udp6", u6.String()}} {
				r := assaytest.Probe(t, &cg, "sendto", c.fam, c.addr)
				if want && !r.Ok() || !want && r.Errno != "EPERM" {
					t.Fatalf("%s: sendto %s (send %d): %+v; want allowed=%v", step, c.addr, i+1, r, want)
				}
			}
		}
	}
	epoch := func() uint64 {
		var e uint64
		if err := inst.maps[bpfMapVerdictEpoch].Lookup(uint32(0), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	lo4 := [4]uint32{binary.LittleEndian.Uint32([]byte{127, 0, 0, 1})}
	slot4 := vcacheSlot(lo4, 4, u4.Port(), 17)
	entries := func() []vcacheEntry {
		var v []vcacheEntry
		if err := inst.maps[bpfMapVcache].Lookup(slot4, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	cached := func(rule uint32) bool {
		for _, e := range entries() {
			if e.Fam == 4 && e.Addr == lo4 && e.Port == u4.Port() && e.Proto == 17 && e.Epoch == epoch() && e.Rule == rule && e.Seq%2 == 0 {
				return true
			}
		}
		return false
	}

	send("allow", true)
	if !cached(0) {
		t.Fatalf("no cached verdict for 127.0.0.1:%d after two sends: %+v (epoch %d)", u4.Port(), entries(), epoch())
	}
	for i, step := range []struct {
		name  string
		rules Rules
		want  bool
		rule  uint32
	}{
		{"deny ports", denyPorts, false, 7},
		{"allow again", allow, true, 0},
		{"deny prefixes", denyNets, false, 11},
		{"allow once more", allow, true, 0},
		{"deny ports again", denyPorts, false, 7},
	} {
		if err := inst.Reload(step.rules, false); err != nil {
			t.Fatal(err)
		}
		send(step.name, step.want)
		if !cached(step.rule) {
			t.Errorf("step %d (%s): no cached verdict %d for the destination: %+v", i, step.name, step.rule, entries())
		}
	}

	// The ports are denied now. A forged entry of the current epoch saying
	// "allowed" is obeyed (the programs do answer from the cache)...
	forged := entries()
	for i := range forged {
		forged[i] = vcacheEntry{Epoch: epoch(), Addr: lo4, Port: u4.Port(), Proto: 17, Fam: 4, Rule: 0}
	}
	if err := inst.maps[bpfMapVcache].Put(slot4, forged); err != nil {
		t.Fatal(err)
	}
	if r := assaytest.Probe(t, &cg, "sendto", "udp4", u4.String()); !r.Ok() {
		t.Fatalf("a forged cache entry of the current epoch was not used: %+v", r)
	}
	// ...and a new epoch discards it.
	if err := inst.InvalidateVerdicts(); err != nil {
		t.Fatal(err)
	}
	if r := assaytest.Probe(t, &cg, "sendto", "udp4", u4.String()); r.Errno != "EPERM" {
		t.Fatalf("after InvalidateVerdicts, the forged entry still answered: %+v", r)
	}
}

// TestVerdictCacheLearned: the verdict cache (and the socket path's fast
// path, which answers a cached "allowed" before reading the generation)
// follows learned DNS addresses. Under a version 2 default-deny policy
// with host entries, UDP datagrams to loopback are refused until their
// address is learned, allowed (twice: the second from the cache) once it
// is and the change is committed with InvalidateVerdicts (what the
// resolver's table does), and refused again once it expires (DeleteDNS,
// then a new epoch), in both families.
func TestVerdictCacheLearned(t *testing.T) {
	testenv.Privileged(t)
	cg := assaytest.NewCgroup(t)
	u4 := assaytest.ListenUDP(t, "127.0.0.1:0")
	u6 := assaytest.ListenUDP(t, "[::1]:0")
	rules := Rules{
		Net2: &Net2{DefaultDeny: true},
		// Nothing here is sent to port 53: the resolver's address is
		// only needed to load the redirect.
		DNS: &DNS{Resolver4: netip.MustParseAddrPort("127.0.0.1:53535")},
	}
	inst, err := Load(Config{Rules: rules, Scopes: []Scope{{Path: cg.Path, ID: cg.ID, Level: cg.Level}}})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if err := inst.Attach(); err != nil {
		t.Fatal(err)
	}
	keys := []DNSKey{{Addr: u4.Addr.Addr(), Port: u4.Port(), Proto: 17}, {Addr: u6.Addr.Addr(), Port: u6.Port(), Proto: 17}}
	send := func(step string, want bool) {
		t.Helper()
		for i := 0; i < 2; i++ {
			for _, c := range []struct{ fam, addr string }{{"udp4", u4.String()}, {"udp6", u6.String()}} {
				r := assaytest.Probe(t, &cg, "sendto", c.fam, c.addr)
				if want && !r.Ok() || !want && r.Errno != "EPERM" {
					t.Fatalf("%s: sendto %s (send %d): %+v; want allowed=%v", step, c.addr, i+1, r, want)
				}
			}
		}
	}
	send("not learned", false)
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			if err := inst.PutDNS(k, 30); err != nil {
				t.Fatal(err)
			}
		}
		if err := inst.InvalidateVerdicts(); err != nil {
			t.Fatal(err)
		}
		send(fmt.Sprintf("learned (round %d)", round+1), true)
		for _, k := range keys {
			if err := inst.DeleteDNS(k); err != nil {
				t.Fatal(err)
			}
		}
		if err := inst.InvalidateVerdicts(); err != nil {
			t.Fatal(err)
		}
		send(fmt.Sprintf("expired (round %d)", round+1), false)
	}
}
