package kernel

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Path is an event path, the index of the per-path counters.
type Path int

// The event paths, as in bpf/common.h.
const (
	PathTracepoint Path = 0
	PathLSM        Path = 1
	PathSocket     Path = 2
	NumPaths            = 3
)

func (p Path) String() string {
	switch p {
	case PathTracepoint:
		return "Tracepoint"
	case PathLSM:
		return "LSM"
	case PathSocket:
		return "Socket"
	}
	return fmt.Sprintf("path%d", int(p))
}

// Counters are the per-path event counts, summed over CPUs.
type Counters struct {
	Emitted    [NumPaths]uint64 // records submitted to a ring buffer
	Dropped    [NumPaths]uint64 // records lost: the ring buffer was full
	Suppressed [NumPaths]uint64 // records not emitted by rate limiting
	// Unaggregated counts the suppressed or dropped records that could not
	// be aggregated either (both aggregation tables full).
	Unaggregated [NumPaths]uint64
}

// Counters reads the per-CPU counters.
func (inst *Instance) Counters() (Counters, error) {
	return readCounters(inst.maps[bpfMapCounters])
}

func readCounters(m *ebpf.Map) (Counters, error) {
	var per []bpfAssayCounters
	var c Counters
	if err := m.Lookup(uint32(0), &per); err != nil {
		return c, fmt.Errorf("read counters: %w", err)
	}
	for _, pc := range per {
		for i := 0; i < NumPaths; i++ {
			c.Emitted[i] += pc.Emitted[i]
			c.Dropped[i] += pc.Dropped[i]
			c.Suppressed[i] += pc.Suppressed[i]
			c.Unaggregated[i] += pc.Unaggregated[i]
		}
	}
	return c, nil
}
