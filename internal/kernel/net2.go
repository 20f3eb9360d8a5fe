package kernel

import (
	"fmt"
	"net/netip"
)

// settings.net2 bits (bpf/net2.h).
const (
	net2Active      = 1
	net2DefaultDeny = 2
)

// Net2 is a version 2 network section in the kernel's terms (bpf/net2.h):
// deny entries win, then allow entries, then the default. An entry with
// an invalid (zero) Prefix covers every address of both families; Port 0
// every port; Proto 0 every protocol. An entry with several ports is
// given once per port.
type Net2 struct {
	Deny        []Net2Entry
	Allow       []Net2Entry
	DefaultDeny bool // blocked under RuleNotInAllowCIDRs when nothing matches
}

// Net2Entry is one (prefix, port, protocol) key and its rule id.
type Net2Entry struct {
	Prefix netip.Prefix // zero: any address
	Port   uint16
	Proto  uint8 // 6 TCP, 17 UDP, 0 any
	ID     uint32
}

// net2Keys returns the LPM keys of entries, per family.
func net2Keys(es []Net2Entry) (v4 []bpfAssayNet2V4Key, v4ids []uint32, v6 []bpfAssayNet2V6Key, v6ids []uint32, err error) {
	for _, e := range es {
		port := [2]uint8{uint8(e.Port >> 8), uint8(e.Port)}
		p := e.Prefix
		if !p.IsValid() {
			v4 = append(v4, bpfAssayNet2V4Key{Prefixlen: 24, Port: port, Proto: e.Proto})
			v4ids = append(v4ids, e.ID)
			v6 = append(v6, bpfAssayNet2V6Key{Prefixlen: 24, Port: port, Proto: e.Proto})
			v6ids = append(v6ids, e.ID)
			continue
		}
		p = p.Masked()
		switch {
		case p.Addr().Is4():
			v4 = append(v4, bpfAssayNet2V4Key{Prefixlen: 24 + uint32(p.Bits()), Port: port, Proto: e.Proto, Addr: p.Addr().As4()})
			v4ids = append(v4ids, e.ID)
		case p.Addr().Is6() && !p.Addr().Is4In6():
			v6 = append(v6, bpfAssayNet2V6Key{Prefixlen: 24 + uint32(p.Bits()), Port: port, Proto: e.Proto, Addr: p.Addr().As16()})
			v6ids = append(v6ids, e.ID)
		default:
			return nil, nil, nil, nil, fmt.Errorf("invalid prefix %v", e.Prefix)
		}
	}
	return v4, v4ids, v6, v6ids, nil
}
