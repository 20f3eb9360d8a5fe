// Package kernel loads Assay's BPF object, fills its maps from a rule set,
// attaches its programs to a scope and reads back events and counters.
//
// The BPF sources are in bpf/; `make generate` rebuilds bpf_x86_bpfel.o and
// its Go bindings, which are committed.
package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// DefaultRingBytes is the default size of each ring buffer.
const DefaultRingBytes = 16 << 20

// MaxScopes is how many scope cgroups one instance can judge.
const MaxScopes = 8

// Scope is a cgroup v2 the programs judge, with its descendants.
type Scope struct {
	Path  string // cgroup2 directory (network programs attach here)
	ID    uint64 // cgroup id (inode of the directory)
	Level int    // depth below the cgroup2 root
}

// Config says what to load.
type Config struct {
	Rules  Rules
	Scopes []Scope // ignored when All
	All    bool    // judge every task on the host (attach at the cgroup2 root)
	Root   string  // the cgroup2 mount, for All
	Audit  bool    // report, never block
	Trace  bool    // load the tracepoint (observation) path

	// Object is a BPF object file to use instead of the embedded one.
	Object string
	// RingBytes sizes each ring buffer (a power of two, at least one page);
	// 0 means DefaultRingBytes.
	RingBytes int
}

// Instance is a loaded (and, after Attach, enforcing) set of programs.
type Instance struct {
	cfg      Config
	coll     *ebpf.Collection
	links    []linkCloser
	attached bool
}

type linkCloser interface{ Close() error }

var (
	netPrograms   = []string{bpfProgConnect4, bpfProgConnect6, bpfProgSendmsg4, bpfProgSendmsg6}
	filePrograms  = []string{bpfProgFileOpen, bpfProgInodeLink, bpfProgInodeRename}
	tracePrograms = []string{bpfProgTraceSysEnter, bpfProgTraceExec}
)

// LoadSpec returns the embedded BPF object, or the one at path.
func LoadSpec(path string) (*ebpf.CollectionSpec, error) {
	if path == "" {
		return loadBpf()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("BPF object %s: %w", path, err)
	}
	return spec, nil
}

// Load loads the programs the rules need and fills every map. Nothing is
// attached yet: a failure here leaves the system as it was.
func Load(cfg Config) (*Instance, error) {
	if !cfg.All && len(cfg.Scopes) == 0 {
		return nil, errors.New("no scope: give a cgroup or ask for the whole host")
	}
	if len(cfg.Scopes) > MaxScopes {
		return nil, fmt.Errorf("%d scope cgroups given; at most %d are supported", len(cfg.Scopes), MaxScopes)
	}
	if cfg.RingBytes == 0 {
		cfg.RingBytes = DefaultRingBytes
	}
	if cfg.RingBytes < os.Getpagesize() || cfg.RingBytes&(cfg.RingBytes-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d", cfg.RingBytes, os.Getpagesize())
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()

	spec, err := LoadSpec(cfg.Object)
	if err != nil {
		return nil, err
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	if cfg.Rules.HasNetwork() {
		for _, p := range netPrograms {
			want[p] = true
		}
	}
	if cfg.Rules.HasFiles() {
		for _, p := range filePrograms {
			want[p] = true
		}
	}
	if cfg.Trace {
		for _, p := range tracePrograms {
			want[p] = true
		}
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}

	v4d, _, v6d, _, err := splitCIDRs(cfg.Rules.DenyCIDRs)
	if err != nil {
		return nil, err
	}
	v4a, _, v6a, _, err := splitCIDRs(cfg.Rules.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	sizes := map[string]int{
		bpfMapDenyV4:      len(v4d),
		bpfMapDenyV6:      len(v6d),
		bpfMapAllowV4:     len(v4a),
		bpfMapAllowV6:     len(v6a),
		bpfMapFileRules:   len(cfg.Rules.Files),
		bpfMapEvents:      cfg.RingBytes,
		bpfMapTraceEvents: cfg.RingBytes,
	}
	for name, n := range sizes {
		if n < 1 {
			n = 1
		}
		spec.Maps[name].MaxEntries = uint32(n)
	}
	if !cfg.Trace {
		spec.Maps[bpfMapTraceEvents].MaxEntries = uint32(os.Getpagesize())
	}

	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		return nil, explainLoad(err)
	}
	inst := &Instance{cfg: cfg, coll: coll}
	if err := inst.fill(); err != nil {
		coll.Close()
		return nil, err
	}
	return inst, nil
}

// checkSpec makes sure a custom object has what this loader drives.
func checkSpec(spec *ebpf.CollectionSpec) error {
	for _, m := range []string{bpfMapSettings, bpfMapCounters, bpfMapEvents, bpfMapTraceEvents, bpfMapDenyPorts,
		bpfMapDenyV4, bpfMapDenyV6, bpfMapAllowV4, bpfMapAllowV6, bpfMapFileRules} {
		if spec.Maps[m] == nil {
			return fmt.Errorf("BPF object has no map %q: build it from this version's internal/kernel/bpf", m)
		}
	}
	for _, p := range append(append(append([]string{}, netPrograms...), filePrograms...), tracePrograms...) {
		if spec.Programs[p] == nil {
			return fmt.Errorf("BPF object has no program %q: build it from this version's internal/kernel/bpf", p)
		}
	}
	return nil
}

func (inst *Instance) fill() error {
	cfg := inst.cfg
	st := bpfAssaySettings{}
	if cfg.Audit {
		st.Audit = 1
	}
	if len(cfg.Rules.AllowCIDRs) > 0 {
		st.AllowActive = 1
	}
	if cfg.All {
		st.ScopeAll = 1
	} else {
		st.Nscopes = uint32(len(cfg.Scopes))
		for i, s := range cfg.Scopes {
			st.ScopeId[i] = s.ID
			st.ScopeLevel[i] = uint32(s.Level)
		}
	}
	if cfg.Rules.hasDirRules() {
		st.HasDirRules = 1
	}
	if err := inst.coll.Maps[bpfMapSettings].Put(uint32(0), &st); err != nil {
		return fmt.Errorf("fill settings: %w", err)
	}

	if n := len(cfg.Rules.DenyPorts); n > 0 {
		keys := make([]uint32, 0, n)
		vals := make([]uint32, 0, n)
		for p, id := range cfg.Rules.DenyPorts {
			keys = append(keys, uint32(p))
			vals = append(vals, id)
		}
		if err := update(inst.coll.Maps[bpfMapDenyPorts], keys, vals); err != nil {
			return fmt.Errorf("fill deny_ports: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		cs   []CIDR
		v6   bool
	}{
		{bpfMapDenyV4, cfg.Rules.DenyCIDRs, false},
		{bpfMapDenyV6, cfg.Rules.DenyCIDRs, true},
		{bpfMapAllowV4, cfg.Rules.AllowCIDRs, false},
		{bpfMapAllowV6, cfg.Rules.AllowCIDRs, true},
	} {
		v4, v4ids, v6, v6ids, _ := splitCIDRs(f.cs)
		var err error
		if f.v6 && len(v6) > 0 {
			err = update(inst.coll.Maps[f.name], v6, v6ids)
		} else if !f.v6 && len(v4) > 0 {
			err = update(inst.coll.Maps[f.name], v4, v4ids)
		}
		if err != nil {
			return fmt.Errorf("fill %s: %w", f.name, err)
		}
	}
	if n := len(cfg.Rules.Files); n > 0 {
		keys := make([]bpfAssayFileKey, n)
		vals := make([]uint32, n)
		for i, f := range cfg.Rules.Files {
			keys[i] = bpfAssayFileKey{Dev: f.Dev, Ino: f.Ino}
			vals[i] = f.ID
		}
		if err := update(inst.coll.Maps[bpfMapFileRules], keys, vals); err != nil {
			return fmt.Errorf("fill file_rules: %w", err)
		}
	}
	return nil
}

// update writes keys and values with one batch call where the map type
// supports it, else one call per element.
func update[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Update(&keys[i], &vals[i], ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// Close detaches every program and frees every map.
func (inst *Instance) Close() error {
	err := inst.Detach()
	inst.coll.Close()
	return err
}
