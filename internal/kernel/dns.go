package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// settings.net2 bit (bpf/dns.h).
const net2DNS = 4

// DNSEntriesMax is how many learned keys each family's map holds
// (bpf/dns.h); a name's answer that does not fit fails with SERVFAIL.
const DNSEntriesMax = 1 << 18

// dnsPrograms rewrite the source of the resolver's replies (bpf/dns.h).
var dnsPrograms = []string{bpfProgRecvmsg4, bpfProgRecvmsg6}

// DNS is the redirect of a sandbox's DNS queries to assay's resolver
// (bpf/dns.h): where it listens. Resolver6 may be the zero AddrPort (no
// IPv6 loopback: IPv6 queries fail closed).
type DNS struct {
	Resolver4 netip.AddrPort
	Resolver6 netip.AddrPort
}

// DNSKey is one learned (address, port, protocol): port 0 and protocol 0
// match any.
type DNSKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// installDNS writes the resolver's addresses (the same in both
// generations).
func (inst *Instance) installDNS(d *DNS) error {
	if d == nil {
		return nil
	}
	if !d.Resolver4.Addr().Is4() || d.Resolver4.Port() == 0 {
		return fmt.Errorf("the resolver's IPv4 address %v is not an IPv4 address and port", d.Resolver4)
	}
	c := bpfAssayDnsConf{Port4: htons(d.Resolver4.Port())}
	a4 := d.Resolver4.Addr().As4()
	c.Addr4 = binary.NativeEndian.Uint32(a4[:]) // the bytes in network order
	if d.Resolver6.IsValid() {
		if !d.Resolver6.Addr().Is6() || d.Resolver6.Addr().Is4In6() || d.Resolver6.Port() == 0 {
			return fmt.Errorf("the resolver's IPv6 address %v is not an IPv6 address and port", d.Resolver6)
		}
		c.Port6 = htons(d.Resolver6.Port())
		c.Addr6 = d.Resolver6.Addr().As16()
	}
	if err := inst.maps[bpfMapDnsConf].Put(uint32(0), &c); err != nil {
		return fmt.Errorf("fill dns_conf: %w", err)
	}
	return nil
}

// htons returns p in network byte order as the kernel stores a __u16.
func htons(p uint16) uint16 {
	b := [2]byte{byte(p >> 8), byte(p)}
	return binary.NativeEndian.Uint16(b[:])
}

// PutDNS allows a learned key under rule id (the resolver calls it before
// releasing the answer).
func (inst *Instance) PutDNS(k DNSKey, id uint32) error {
	m, key, err := inst.dnsKey(k)
	if err != nil {
		return err
	}
	if err := m.Update(key, id, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("learn %v port %d: %w", k.Addr, k.Port, err)
	}
	return nil
}

// DeleteDNS removes a learned key (expired, or its name no longer allowed).
func (inst *Instance) DeleteDNS(k DNSKey) error {
	m, key, err := inst.dnsKey(k)
	if err != nil {
		return err
	}
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget %v port %d: %w", k.Addr, k.Port, err)
	}
	return nil
}

// DNSEntries counts the learned keys in the kernel (IPv4 and IPv6).
func (inst *Instance) DNSEntries() (int, error) {
	n := 0
	for _, name := range []string{bpfMapDnsV4, bpfMapDnsV6} {
		var k []byte
		it := inst.maps[name].Iterate()
		var v uint32
		for it.Next(&k, &v) {
			n++
		}
		if err := it.Err(); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (inst *Instance) dnsKey(k DNSKey) (*ebpf.Map, any, error) {
	a := k.Addr.Unmap()
	port := [2]uint8{uint8(k.Port >> 8), uint8(k.Port)}
	switch {
	case a.Is4():
		return inst.maps[bpfMapDnsV4], &bpfAssayDnsV4Key{Port: port, Proto: k.Proto, Addr: a.As4()}, nil
	case a.Is6():
		return inst.maps[bpfMapDnsV6], &bpfAssayDnsV6Key{Port: port, Proto: k.Proto, Addr: a.As16()}, nil
	}
	return nil, nil, fmt.Errorf("invalid learned address %v", k.Addr)
}
