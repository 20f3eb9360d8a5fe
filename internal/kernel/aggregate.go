package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
)

// Sizes of the aggregation tables (see bpf/common.h, assay_agg_key). They
// allocate entries as they fill (BPF_F_NO_PREALLOC).
const (
	// DefaultAggPairs is how many distinct (cgroup, rule, target) entries
	// the pair table holds between two drains.
	DefaultAggPairs = 65536
	// aggRules is how many (cgroup, rule) entries the overflow table holds
	// between two drains, for events whose target could not be recorded.
	aggRules = 4096
)

// The slots of the agg array of maps.
const (
	aggSlotPairs = 0
	aggSlotRules = 1
)

// Aggregate counts the enforcement events of one cgroup, rule and target
// that were not emitted one by one since the previous drain.
type Aggregate struct {
	CgroupID uint64
	RuleID   uint32
	Kind     uint8 // as in the records: 1 connect, 2 sendmsg, 3 file
	Verdict  uint8 // 1 blocked, 2 audit
	// Unrecorded: the target is not known (the pair table was full); the
	// target fields below are zero.
	Unrecorded bool

	// Network targets.
	Family   uint16
	Protocol uint8
	Port     uint16
	Mapped   bool
	Unspec   uint8
	Addr     [16]byte // IPv4 in the first 4 bytes

	// File targets.
	Dev uint32
	Ino uint64
	Op  uint8

	Suppressed uint64 // over the cgroup's rate limit
	Dropped    uint64 // the ring buffer was full
	FirstNS    uint64 // CLOCK_MONOTONIC of the first and the last
	LastNS     uint64
	PID, TID   uint32 // the first occurrence's
	Comm       string
}

// newAggTable creates an empty aggregation table for slot.
func (inst *Instance) newAggTable(slot int) (*ebpf.Map, error) {
	n := inst.cfg.AggPairs
	if n <= 0 {
		n = DefaultAggPairs
	}
	if slot == aggSlotRules {
		n = aggRules
	}
	// From the object's own inner map spec, with its BTF: Linux 6.1
	// refuses an inner map created without BTF where the template has it
	// (timer_off differs), with EINVAL.
	if inst.spec == nil || inst.spec.Maps[bpfMapAgg] == nil || inst.spec.Maps[bpfMapAgg].InnerMap == nil {
		return nil, errors.New("create aggregation table: no spec for it")
	}
	ms := inst.spec.Maps[bpfMapAgg].InnerMap.Copy()
	ms.Name = fmt.Sprintf("agg_%d", slot)
	ms.MaxEntries = uint32(n)
	m, err := ebpf.NewMap(ms)
	if err != nil {
		return nil, fmt.Errorf("create aggregation table: %w", err)
	}
	return m, nil
}

// installAgg puts empty aggregation tables in place (at load).
func (inst *Instance) installAgg() error {
	_, err := inst.swapAgg()
	return err
}

// swapAgg puts empty tables in both slots and returns the ones that were
// there (nil where a slot was empty). Each slot write waits for an RCU
// grace period (the kernel does, for arrays of maps), so when it returns
// no program is still writing to the old tables: they can be read whole.
func (inst *Instance) swapAgg() ([2]*ebpf.Map, error) {
	var old [2]*ebpf.Map
	outer := inst.maps[bpfMapAgg]
	if outer == nil {
		return old, nil // a pinned instance from a version without it
	}
	var fresh [2]*ebpf.Map
	for slot := range 2 {
		if m := inst.aggSpare[slot]; m != nil {
			fresh[slot], inst.aggSpare[slot] = m, nil
			continue
		}
		m, err := inst.newAggTable(slot)
		if err != nil {
			for _, f := range fresh {
				if f != nil {
					f.Close()
				}
			}
			return old, err
		}
		fresh[slot] = m
	}
	for slot := range 2 {
		old[slot] = inst.aggLive[slot]
		if old[slot] == nil {
			// Reopened pinned instance: find what is installed.
			var id ebpf.MapID
			if err := outer.Lookup(uint32(slot), &id); err == nil {
				if m, err := ebpf.NewMapFromID(id); err == nil {
					old[slot] = m
				}
			}
		}
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for slot := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := outer.Put(uint32(slot), fresh[slot]); err != nil {
				errs[slot] = fmt.Errorf("install aggregation table %d: %w", slot, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for slot := range 2 {
			if errs[slot] != nil {
				fresh[slot].Close()
			} else {
				inst.aggLive[slot] = fresh[slot]
			}
		}
		return old, err
	}
	inst.aggLive = fresh
	return old, nil
}

// DrainAggregates swaps the aggregation tables for empty ones and returns
// what the old ones counted. It also works as a barrier: when it returns,
// every program that was running when it was called has finished (see
// swapAgg), so after Detach the counters are final. Not safe for
// concurrent use.
func (inst *Instance) DrainAggregates() ([]Aggregate, error) {
	old, err := inst.swapAgg()
	var out []Aggregate
	for slot, m := range old {
		if m == nil {
			continue
		}
		got, rerr := readAgg(m)
		out = append(out, got...)
		if rerr != nil {
			err = errors.Join(err, rerr)
			m.Close()
			continue
		}
		if inst.aggSpare[slot] == nil {
			inst.aggSpare[slot] = m // emptied by readAgg: reuse it next time
		} else {
			m.Close()
		}
	}
	return out, err
}

// readAgg reads and deletes every entry of a table no program writes to.
func readAgg(m *ebpf.Map) ([]Aggregate, error) {
	var out []Aggregate
	var keys []bpfAssayAggKey
	var k bpfAssayAggKey
	var v bpfAssayAggVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		out = append(out, aggregateOf(k, v))
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("read aggregation table: %w", err)
	}
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, fmt.Errorf("empty aggregation table: %w", err)
		}
	}
	return out, nil
}

func aggregateOf(k bpfAssayAggKey, v bpfAssayAggVal) Aggregate {
	comm := make([]byte, 0, len(v.Comm))
	for _, c := range v.Comm {
		if c == 0 {
			break
		}
		comm = append(comm, byte(c))
	}
	return Aggregate{
		CgroupID: k.CgroupId, RuleID: k.RuleId, Kind: k.Kind, Verdict: k.Verdict, Unrecorded: k.Unrecorded == 1,
		Family: k.Family, Protocol: k.Protocol, Port: k.Port, Mapped: k.Mapped == 1, Unspec: k.Unspec, Addr: k.Addr,
		Dev: k.Dev, Ino: k.Ino, Op: k.Op,
		Suppressed: v.Suppressed, Dropped: v.Dropped, FirstNS: v.FirstNs, LastNS: v.LastNs,
		PID: v.Pid, TID: v.Tid, Comm: string(comm),
	}
}

// closeAgg releases the instance's handles on the aggregation tables (the
// outer map keeps the installed ones alive).
func (inst *Instance) closeAgg() {
	for i, m := range inst.aggLive {
		if m != nil {
			m.Close()
		}
		inst.aggLive[i] = nil
	}
	for i, m := range inst.aggSpare {
		if m != nil {
			m.Close()
		}
		inst.aggSpare[i] = nil
	}
}

// SweepRate deletes the per-cgroup budgets of seconds that are over (older
// than the previous one: programs only touch the current second's), so that
// the rate map holds only cgroups that emitted in the last seconds.
// nowSecond is CLOCK_MONOTONIC in seconds. It returns how many it deleted.
func (inst *Instance) SweepRate(nowSecond uint64) (int, error) {
	m := inst.maps[bpfMapRate]
	if m == nil || m.KeySize() != uint32(binary.Size(bpfAssayRateKey{})) {
		return 0, nil // a pinned instance from a version with another layout
	}
	var stale []bpfAssayRateKey
	var k bpfAssayRateKey
	var v bpfAssayRate
	it := m.Iterate()
	for it.Next(&k, &v) {
		if k.Second+2 <= nowSecond {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read rate budgets: %w", err)
	}
	for i := range stale {
		if err := m.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return i, fmt.Errorf("sweep rate budgets: %w", err)
		}
	}
	return len(stale), nil
}
