package kernel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/assaymcp/assay/internal/events"
	"github.com/assaymcp/assay/internal/testenv"
	"github.com/cilium/ebpf"
)

// TestLoadNetworkAndTrace loads a network policy with the trace path and
// checks, by reading the kernel's objects back (not through the loader's
// own helpers), that the network and trace programs and no file program
// are loaded, that generation 0's rule maps hold every rule under its id,
// that the settings and active generation are right, and that the scope
// configuration is frozen into the programs' .rodata.
func TestLoadNetworkAndTrace(t *testing.T) {
	testenv.Privileged(t)
	scopes := []Scope{{Path: "/", ID: 1, Level: 0}, {Path: "/x", ID: 4242, Level: 1}}
	inst, err := Load(Config{
		Rules: Rules{
			DenyPorts:  map[uint16]uint32{22: 1},
			DenyCIDRs:  []CIDR{{netip.MustParsePrefix("10.0.0.0/8"), 2}, {netip.MustParsePrefix("fd00::/8"), 3}},
			AllowCIDRs: []CIDR{{netip.MustParsePrefix("127.0.0.0/8"), 4}},
		},
		Scopes:    scopes,
		Trace:     true,
		RateLimit: 77,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()

	for _, p := range append(append([]string{}, netPrograms...), tracePrograms...) {
		if inst.progs[p] == nil {
			t.Errorf("program %s not loaded", p)
		}
	}
	for _, p := range filePrograms {
		if inst.progs[p] != nil {
			t.Errorf("file program %s loaded for a policy without file rules", p)
		}
	}

	// The rule maps of generation 0, opened by the ids the outer maps hold.
	lookup := func(outer string, key []byte) (uint32, error) {
		var id ebpf.MapID
		if err := inst.maps[outer].Lookup(uint32(0), &id); err != nil {
			return 0, err
		}
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return 0, err
		}
		defer m.Close()
		var v uint32
		err = m.Lookup(key, &v)
		return v, err
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	lpm := func(bits uint32, addr ...byte) []byte { return append(le32(bits), addr...) }
	fd00 := make([]byte, 16)
	fd00[0] = 0xfd
	for _, c := range []struct {
		outer string
		key   []byte
		want  uint32
	}{
		{bpfMapDenyPorts, le32(22), 1},
		{bpfMapDenyV4, lpm(8, 10, 0, 0, 0), 2},
		{bpfMapDenyV6, lpm(8, fd00...), 3},
		{bpfMapAllowV4, lpm(8, 127, 0, 0, 0), 4},
	} {
		if got, err := lookup(c.outer, c.key); err != nil || got != c.want {
			t.Errorf("%s[% x] = %d, %v; want %d", c.outer, c.key, got, err, c.want)
		}
	}
	// deny_ports is an array indexed by port: 0 means no rule.
	if got, err := lookup(bpfMapDenyPorts, le32(23)); err != nil || got != 0 {
		t.Errorf("deny_ports[23] = %d, %v; want 0 (no rule)", got, err)
	}

	var st bpfAssaySettings
	if err := inst.maps[bpfMapSettings].Lookup(uint32(0), &st); err != nil || st.Audit != 0 || st.AllowActive != 1 || st.HasDirRules != 0 {
		t.Errorf("settings[0] = %+v, %v; want enforce with allow_cidrs active", st, err)
	}
	var gen uint32
	if err := inst.maps[bpfMapActive].Lookup(uint32(0), &gen); err != nil || gen != 0 {
		t.Errorf("active = %d, %v; want 0", gen, err)
	}

	// The configuration every program was loaded with, as the kernel holds it.
	want := bpfAssayScope{Nscopes: 2, RateLimit: 77}
	for i, s := range scopes {
		want.ScopeId[i], want.ScopeLevel[i] = s.ID, uint32(s.Level)
	}
	wantBytes, err := binary.Append(nil, binary.LittleEndian, &want)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bpfProgConnect4, bpfProgTraceSysExit} {
		info, err := inst.progs[p].Info()
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := info.MapIDs()
		found := false
		for _, id := range ids {
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				t.Fatal(err)
			}
			mi, err := m.Info()
			if err == nil && strings.Contains(mi.Name, "rodata") {
				val := make([]byte, mi.ValueSize)
				if err := m.Lookup(uint32(0), &val); err != nil {
					t.Errorf("%s: read .rodata: %v", p, err)
				} else if !bytes.Contains(val, wantBytes) {
					t.Errorf("%s: .rodata % x does not hold the scope configuration % x", p, val, wantBytes)
				}
				found = true
			}
			m.Close()
		}
		if !found {
			t.Errorf("%s uses no .rodata map (maps %v)", p, ids)
		}
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
