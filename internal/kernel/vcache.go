package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// InvalidateVerdicts starts a new epoch of the socket path's verdict cache
// (bpf/vcache.h): every verdict cached before it is judged again. Reload
// calls it after flipping the generation; whoever changes what a verdict
// depends on outside a reload (learned DNS addresses) must call it after
// the change, before relying on it. Epochs only grow: CLOCK_MONOTONIC
// nanoseconds, or the last epoch plus one, so two processes (a monitor
// and `assay reload`) never reuse one.
func (inst *Instance) InvalidateVerdicts() error {
	m := inst.maps[bpfMapVerdictEpoch]
	if m == nil {
		return nil // a pinned instance of an object without the cache
	}
	var cur uint64
	if err := m.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read the verdict cache epoch: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("clock: %w", err)
	}
	next := uint64(ts.Nano())
	if next <= cur {
		next = cur + 1
	}
	if err := m.Put(uint32(0), next); err != nil {
		return fmt.Errorf("set the verdict cache epoch: %w", err)
	}
	return nil
}
