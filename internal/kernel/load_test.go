package kernel

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestLoadNetworkAndTrace(t *testing.T) {
	requireRoot(t)
	inst, err := Load(Config{
		Rules: Rules{
			DenyPorts:  map[uint16]uint32{22: 1},
			DenyCIDRs:  []CIDR{{netip.MustParsePrefix("10.0.0.0/8"), 2}, {netip.MustParsePrefix("fd00::/8"), 3}},
			AllowCIDRs: []CIDR{{netip.MustParsePrefix("127.0.0.0/8"), 4}},
		},
		Scopes: []Scope{{Path: "/", ID: 1, Level: 0}},
		Trace:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var id uint32
	if err := inst.innerMap(bpfMapDenyPorts, 0).Lookup(uint32(22), &id); err != nil || id != 1 {
		t.Fatalf("deny_ports[22] = %d, %v", id, err)
	}
}

// The Go mirrors of the records must keep the sizes the decoder expects.
func TestRecordSizes(t *testing.T) {
	for name, got := range map[string]int{
		"header": binary.Size(bpfAssayEventHeader{}),
		"net":    binary.Size(bpfAssayNetEvent{}),
		"file":   binary.Size(bpfAssayFileEvent{}),
		"trace":  binary.Size(bpfAssayTraceEvent{}),
	} {
		t.Logf("%s: %d", name, got)
	}
}
