package kernel

import (
	"encoding/binary"
	"github.com/assaymcp/assay/internal/events"
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
	for name, c := range map[string]struct{ got, want int }{
		"header": {binary.Size(bpfAssayEventHeader{}), events.HeaderSize},
		"net":    {binary.Size(bpfAssayNetEvent{}), events.NetSize},
		"file":   {binary.Size(bpfAssayFileEvent{}), events.FileSize},
		"trace":  {binary.Size(bpfAssayTraceEvent{}), events.TraceSize},
	} {
		if c.got != c.want {
			t.Errorf("%s record: BPF layout %d bytes, decoder expects %d", name, c.got, c.want)
		}
	}
}
