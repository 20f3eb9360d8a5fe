// Package kernel loads Assay's BPF object, fills its maps from a rule set,
// attaches its programs to a scope, swaps policies atomically, pins an
// instance so it outlives the process, and reads back events and counters.
//
// The BPF sources are in bpf/; `make generate` rebuilds the objects for
// amd64 and arm64 (bpf_x86_bpfel.o, bpf_arm64_bpfel.o) and their Go
// bindings, which are committed.
package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
)

// DefaultRingBytes is the default size of each ring buffer.
const DefaultRingBytes = 16 << 20

// DefaultRateLimit is the default event budget per cgroup per second.
const DefaultRateLimit = 50000

// MaxScopes is how many scope cgroups one instance can judge.
const MaxScopes = 8

// Scope is a cgroup v2 the programs judge, with its descendants.
type Scope struct {
	Path  string `json:"path"`  // cgroup2 directory (network programs attach here)
	ID    uint64 `json:"id"`    // cgroup id (inode of the directory)
	Level int    `json:"level"` // depth below the cgroup2 root
}

// Config says what to load.
type Config struct {
	Rules  Rules
	Scopes []Scope // ignored when All
	All    bool    // judge every task on the host (attach at the cgroup2 root)
	Root   string  // the cgroup2 mount, for All
	Audit  bool    // report, never block
	Trace  bool    // load the tracepoint (observation) path

	// ObserveChanges makes the tracepoint path (Trace) report changes too
	// (unlink, rename, mkdir, chmod, ...: `assay learn` without BPF LSM).
	// ObserveLSM loads the LSM observe programs (bpf/observe.h: `assay
	// learn` where BPF LSM works), which report opens, executable mappings
	// and changes; the tracepoint path then reports neither opens nor
	// changes. Both only report: nothing is decided by them.
	ObserveChanges bool
	ObserveLSM     bool

	// Object is a BPF object file to use instead of the embedded one.
	Object string
	// RingBytes sizes each ring buffer (a power of two, at least one page);
	// 0 means DefaultRingBytes.
	RingBytes int
	// RateLimit is the most events one cgroup may emit per second; the
	// rest are counted as suppressed. 0 means DefaultRateLimit; negative
	// means unlimited.
	RateLimit int
	// RateEntries sizes the per-cgroup budget map (an LRU hash: the
	// cgroups that emitted least recently are evicted when it is full); 0
	// keeps the object's size (16384). Tests shrink it.
	RateEntries int
	// AggPairs sizes the aggregation table of events not emitted one by
	// one (distinct cgroup, rule and target between two drains); 0 means
	// DefaultAggPairs. Tests shrink it.
	AggPairs int
}

// Instance is a loaded (and, after Attach, enforcing) set of programs.
type Instance struct {
	cfg      Config
	spec     *ebpf.CollectionSpec
	maps     map[string]*ebpf.Map
	progs    map[string]*ebpf.Program
	links    []namedLink
	attached bool
	pinDir   string // set when pinned
	// The aggregation tables installed in the agg map, and the emptied
	// ones kept for the next swap (see DrainAggregates).
	aggLive, aggSpare [2]*ebpf.Map
}

// Program groups, loaded only when the rules need them.
var (
	netPrograms = []string{bpfProgConnect4, bpfProgConnect6, bpfProgSendmsg4, bpfProgSendmsg6}
	// filePrograms are every file program of the object; fileProgramsHere
	// picks those for the running kernel.
	filePrograms = []string{bpfProgFileOpen, bpfProgInodeLink, bpfProgInodeRename, bpfProgInodeUnlink,
		bpfProgInodeRmdir, bpfProgInodeCreate, bpfProgInodeMkdir, bpfProgInodeMknod, bpfProgInodeSymlink,
		bpfProgInodeSetattr, bpfProgInodeSetattrIdmap, bpfProgInodeSetxattr, bpfProgInodeRemovexattr,
		bpfProgInodeSetAcl, bpfProgInodeRemoveAcl, bpfProgMmapFile, bpfProgFileMprotect,
		bpfProgUnixStreamConnect, bpfProgUnixMaySend}
	tracePrograms = []string{bpfProgTraceSysExit, bpfProgTraceExec}
	// observePrograms report file accesses from the LSM hooks (`assay
	// learn` with Config.ObserveLSM); the path_* hooks need a kernel built
	// with CONFIG_SECURITY_PATH (see ObserveLSMHere).
	observePrograms = []string{bpfProgObserveOpen, bpfProgObserveMmap, bpfProgObserveMprotect, bpfProgObserveUnlink,
		bpfProgObserveRmdir, bpfProgObserveMkdir, bpfProgObserveMknod, bpfProgObserveSymlink, bpfProgObserveLink,
		bpfProgObserveRename, bpfProgObserveTruncate, bpfProgObserveChmod, bpfProgObserveChown, bpfProgObserveFtruncate}
)

// The scope configuration's observe bits (bpf/common.h OBSERVE_*).
const (
	observeChanges = 1
	observeLSM     = 2
)

// The maps holding one policy generation each (arrays of two maps).
var ruleMapNames = []string{bpfMapDenyPorts, bpfMapDenyV4, bpfMapAllowV4, bpfMapDenyV6, bpfMapAllowV6, bpfMapFileRules,
	bpfMapNet2DenyV4, bpfMapNet2AllowV4, bpfMapNet2DenyV6, bpfMapNet2AllowV6}

// LoadSpec returns the embedded BPF object, or the one at path.
func LoadSpec(path string) (*ebpf.CollectionSpec, error) {
	if path == "" {
		return embeddedSpec()
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

// Load creates every map, fills generation 0 with the rules, and loads the
// programs the rules need. Nothing is attached yet: a failure here leaves
// the system as it was.
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
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	removeMemlock()

	spec, err := LoadSpec(cfg.Object)
	if err != nil {
		return nil, err
	}
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	trimSpec(spec)
	inst := &Instance{cfg: cfg, spec: spec}
	if err := inst.createMaps(); err != nil {
		return nil, err
	}
	// Only generation 0 is filled now: programs read the active
	// generation alone, and a reload fills the other one before flipping.
	// (Each slot write of an array of maps waits for an RCU grace period,
	// milliseconds each: filling both at start doubled the start-up time.)
	// The aggregation tables go in at the same time: their slot writes
	// wait for grace periods too, which then overlap.
	aggErr := make(chan error, 1)
	go func() { aggErr <- inst.installAgg() }()
	err = inst.install(0, cfg.Rules, cfg.Audit)
	if err = errors.Join(err, <-aggErr); err != nil {
		inst.Close()
		return nil, err
	}
	if err := inst.maps[bpfMapActive].Put(uint32(0), uint32(0)); err != nil {
		inst.Close()
		return nil, fmt.Errorf("set the active generation: %w", err)
	}
	// The verdict cache works from the first epoch on (0: off).
	if err := inst.InvalidateVerdicts(); err != nil {
		inst.Close()
		return nil, err
	}
	if err := inst.loadPrograms(cfg.Rules, cfg.Trace); err != nil {
		inst.Close()
		return nil, err
	}
	return inst, nil
}

// trimSpec drops the writable data sections (.bss, .data): they only carry
// the BTF anchors of the record types; no program uses them. .rodata stays:
// it holds the load-time configuration (scope_config).
func trimSpec(spec *ebpf.CollectionSpec) {
	for name := range spec.Maps {
		if isDataSection(name) && name != ".rodata" {
			delete(spec.Maps, name)
		}
	}
	for name, v := range spec.Variables {
		if spec.Maps[v.SectionName] == nil {
			delete(spec.Variables, name)
		}
	}
}

// isDataSection reports whether a map of the object is one of its data
// sections (.rodata, .bss, .data and their named variants).
func isDataSection(name string) bool { return strings.HasPrefix(name, ".") }

// checkSpec makes sure a custom object has what this loader drives.
func checkSpec(spec *ebpf.CollectionSpec) error {
	if v := spec.Variables[bpfVarScopeConfig]; v == nil || !v.Constant() || v.Size() != uint32(binary.Size(bpfAssayScope{})) {
		return fmt.Errorf("BPF object has no constant %q of %d bytes: build it from this version's internal/kernel/bpf", bpfVarScopeConfig, binary.Size(bpfAssayScope{}))
	}
	for _, m := range append([]string{bpfMapSettings, bpfMapActive, bpfMapRate, bpfMapCounters, bpfMapAgg, bpfMapEvents, bpfMapTraceEvents, bpfMapVcache, bpfMapVerdictEpoch}, ruleMapNames...) {
		if spec.Maps[m] == nil {
			return fmt.Errorf("BPF object has no map %q: build it from this version's internal/kernel/bpf", m)
		}
	}
	for _, m := range ruleMapNames {
		if spec.Maps[m].InnerMap == nil {
			return fmt.Errorf("BPF object's map %q is not an array of maps: build it from this version's internal/kernel/bpf", m)
		}
	}
	for _, m := range []string{bpfMapDnsConf, bpfMapDnsV4, bpfMapDnsV6, bpfMapDnsOrig} {
		if spec.Maps[m] == nil {
			return fmt.Errorf("BPF object has no map %q: build it from this version's internal/kernel/bpf", m)
		}
	}
	for _, p := range append(append(append(append(append([]string{}, netPrograms...), dnsPrograms...), filePrograms...), tracePrograms...), observePrograms...) {
		if spec.Programs[p] == nil {
			return fmt.Errorf("BPF object has no program %q: build it from this version's internal/kernel/bpf", p)
		}
	}
	return nil
}

// createMaps sizes the ring buffers in the instance's spec and creates
// every map of the object, without programs. The data sections are left to
// loadPrograms: each load gets its own, with the configuration set.
func (inst *Instance) createMaps() error {
	inst.spec.Maps[bpfMapEvents].MaxEntries = uint32(inst.cfg.RingBytes)
	if inst.cfg.RateEntries > 0 {
		inst.spec.Maps[bpfMapRate].MaxEntries = uint32(inst.cfg.RateEntries)
	}
	inst.spec.Maps[bpfMapTraceEvents].MaxEntries = uint32(os.Getpagesize())
	if inst.cfg.Trace || inst.cfg.ObserveLSM {
		inst.spec.Maps[bpfMapTraceEvents].MaxEntries = uint32(inst.cfg.RingBytes)
	}
	spec := inst.spec.Copy()
	spec.Programs = map[string]*ebpf.ProgramSpec{}
	for name := range spec.Maps {
		if isDataSection(name) {
			delete(spec.Maps, name)
		}
	}
	spec.Variables = nil
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return explainLoad(err)
	}
	inst.maps = coll.Maps
	inst.progs = map[string]*ebpf.Program{}
	return nil
}

// scopeConfig is the load-time configuration of the instance's programs:
// its scopes and event budget.
func (inst *Instance) scopeConfig() bpfAssayScope {
	cfg := inst.cfg
	sc := bpfAssayScope{}
	if cfg.All {
		sc.ScopeAll = 1
	} else {
		sc.Nscopes = uint32(len(cfg.Scopes))
		for i, s := range cfg.Scopes {
			sc.ScopeId[i] = s.ID
			sc.ScopeLevel[i] = uint32(s.Level)
		}
	}
	if cfg.RateLimit > 0 {
		sc.RateLimit = uint32(cfg.RateLimit)
	}
	if cfg.ObserveChanges {
		sc.Observe |= observeChanges
	}
	if cfg.ObserveLSM {
		sc.Observe |= observeLSM
	}
	return sc
}

// programsFor lists the programs a rule set needs.
func programsFor(r Rules, trace, observe bool) ([]string, error) {
	var names []string
	if r.HasNetwork() {
		names = append(names, netPrograms...)
	}
	if r.DNS != nil {
		names = append(names, dnsPrograms...)
	}
	if r.HasFiles() {
		fp, err := fileProgramsHere()
		if err != nil {
			return nil, lsmError("read the kernel's LSM hooks", err)
		}
		names = append(names, fp...)
	}
	if trace {
		names = append(names, tracePrograms...)
	}
	if observe {
		op, err := observeProgramsHere()
		if err != nil {
			return nil, lsmError("read the kernel's LSM hooks", err)
		}
		names = append(names, op...)
	}
	return names, nil
}

// loadPrograms loads the programs the rules need that are not loaded yet,
// bound to the instance's maps.
func (inst *Instance) loadPrograms(r Rules, trace bool) error {
	spec := inst.spec.Copy()
	want := map[string]bool{}
	names, err := programsFor(r, trace, inst.cfg.ObserveLSM)
	if err != nil {
		return err
	}
	for _, n := range names {
		// A pinned instance's programs are held by its links alone.
		if inst.progs[n] == nil && !inst.isAttached(n) {
			want[n] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	for name := range want {
		if spec.Programs[name] == nil {
			return fmt.Errorf("program %s: not in the BPF object (or released after the start)", name)
		}
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
	// The configuration is constant: set before the load, it is frozen in
	// the programs' .rodata.
	if err := spec.Variables[bpfVarScopeConfig].Set(inst.scopeConfig()); err != nil {
		return fmt.Errorf("set the scope configuration: %w", err)
	}
	// Replace every map of the object with the instance's own; maps the
	// object does not have (a pinned instance's "meta") must not be
	// passed, the loader refuses unknown replacements.
	repl := map[string]*ebpf.Map{}
	for name, m := range inst.maps {
		if spec.Maps[name] != nil {
			repl[name] = m
		}
	}
	popts, err := programOptions()
	if err != nil {
		return fmt.Errorf("read the kernel's BTF: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl, Programs: popts})
	if err != nil {
		if want[bpfProgFileOpen] {
			return lsmError("load the file programs", err)
		}
		if want[bpfProgObserveOpen] {
			return lsmError("load the LSM observe programs", err)
		}
		return explainLoad(err)
	}
	for name, p := range coll.Programs {
		inst.progs[name] = p
	}
	// Every map is a replacement, cloned by the loader: drop the clones.
	for _, m := range coll.Maps {
		m.Close()
	}
	return nil
}

// install builds one generation's rule maps, fills them, and puts them and
// the generation's settings in place. It never touches the active
// generation's maps.
func (inst *Instance) install(gen uint32, r Rules, audit bool) error {
	v4d, v4dIDs, v6d, v6dIDs, err := splitCIDRs(r.DenyCIDRs)
	if err != nil {
		return err
	}
	v4a, v4aIDs, v6a, v6aIDs, err := splitCIDRs(r.AllowCIDRs)
	if err != nil {
		return err
	}
	var n2 Net2
	if r.Net2 != nil {
		n2 = *r.Net2
	}
	n2d4, n2d4IDs, n2d6, n2d6IDs, err := net2Keys(n2.Deny)
	if err != nil {
		return err
	}
	n2a4, n2a4IDs, n2a6, n2a6IDs, err := net2Keys(n2.Allow)
	if err != nil {
		return err
	}
	inner := map[string]*ebpf.Map{}
	defer func() {
		// The outer maps keep their own references.
		for _, m := range inner {
			m.Close()
		}
	}()
	sizes := map[string]int{
		bpfMapDenyPorts: 0, bpfMapDenyV4: len(v4d), bpfMapAllowV4: len(v4a),
		bpfMapDenyV6: len(v6d), bpfMapAllowV6: len(v6a), bpfMapFileRules: len(r.Files),
		bpfMapNet2DenyV4: len(n2d4), bpfMapNet2AllowV4: len(n2a4), bpfMapNet2DenyV6: len(n2d6), bpfMapNet2AllowV6: len(n2a6),
	}
	for _, name := range ruleMapNames {
		ms := inst.spec.Maps[name].InnerMap.Copy()
		ms.Name = name + "_" + fmt.Sprint(gen)
		if name != bpfMapDenyPorts {
			ms.MaxEntries = uint32(max(sizes[name], 1))
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			return fmt.Errorf("create %s: %w", ms.Name, err)
		}
		inner[name] = m
	}

	if n := len(r.DenyPorts); n > 0 {
		keys := make([]uint32, 0, n)
		vals := make([]uint32, 0, n)
		for p, id := range r.DenyPorts {
			keys = append(keys, uint32(p))
			vals = append(vals, id)
		}
		if err := update(inner[bpfMapDenyPorts], keys, vals); err != nil {
			return fmt.Errorf("fill deny_ports: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		err  error
	}{
		{bpfMapDenyV4, updateIf(inner[bpfMapDenyV4], v4d, v4dIDs)},
		{bpfMapAllowV4, updateIf(inner[bpfMapAllowV4], v4a, v4aIDs)},
		{bpfMapDenyV6, updateIf(inner[bpfMapDenyV6], v6d, v6dIDs)},
		{bpfMapAllowV6, updateIf(inner[bpfMapAllowV6], v6a, v6aIDs)},
		{bpfMapNet2DenyV4, updateIf(inner[bpfMapNet2DenyV4], n2d4, n2d4IDs)},
		{bpfMapNet2AllowV4, updateIf(inner[bpfMapNet2AllowV4], n2a4, n2a4IDs)},
		{bpfMapNet2DenyV6, updateIf(inner[bpfMapNet2DenyV6], n2d6, n2d6IDs)},
		{bpfMapNet2AllowV6, updateIf(inner[bpfMapNet2AllowV6], n2a6, n2a6IDs)},
	} {
		if f.err != nil {
			return fmt.Errorf("fill %s: %w", f.name, f.err)
		}
	}
	if n := len(r.Files); n > 0 {
		keys := make([]bpfAssayFileKey, n)
		vals := make([]bpfAssayFileRule, n)
		for i, f := range r.Files {
			keys[i] = bpfAssayFileKey{Dev: f.Dev, Ino: f.Ino}
			vals[i] = bpfAssayFileRule{Id: f.ID, Access: uint32(f.Access)}
		}
		if err := update(inner[bpfMapFileRules], keys, vals); err != nil {
			return fmt.Errorf("fill file_rules: %w", err)
		}
	}

	st := bpfAssaySettings{}
	if audit {
		st.Audit = 1
	}
	if len(r.AllowCIDRs) > 0 {
		st.AllowActive = 1
	}
	if r.hasDirRules() {
		st.HasDirRules = 1
	}
	if r.FilesV2 {
		st.Files = filesV2
		if r.FilesDefaultDeny {
			st.Files |= filesDefaultDeny
		}
	}
	if r.Net2 != nil {
		st.Net2 = net2Active
		if r.Net2.DefaultDeny {
			st.Net2 |= net2DefaultDeny
		}
	}
	if r.DNS != nil {
		// With version 2 rules, learned addresses are judged too; without
		// (observe mode) the queries are only redirected.
		st.Net2 |= net2DNS
		// Before the settings: a generation with NET2_DNS never runs
		// without the resolver's address.
		if err := inst.installDNS(r.DNS); err != nil {
			return err
		}
	}
	// Settings first, then the maps: the generation is inactive, so the
	// order only matters for readability.
	if err := inst.maps[bpfMapSettings].Put(gen, &st); err != nil {
		return fmt.Errorf("fill settings: %w", err)
	}
	// Each write waits for an RCU grace period in the kernel; concurrent
	// writers share grace periods, so write every slot at once.
	errs := make([]error, len(ruleMapNames))
	var wg sync.WaitGroup
	for i, name := range ruleMapNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := inst.maps[name].Put(gen, inner[name]); err != nil {
				errs[i] = fmt.Errorf("install %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func updateIf[K any](m *ebpf.Map, keys []K, ids []uint32) error {
	if len(keys) == 0 {
		return nil
	}
	return update(m, keys, ids)
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

// ActiveGeneration returns the policy generation in force (0 or 1).
func (inst *Instance) ActiveGeneration() (uint32, error) {
	var gen uint32
	err := inst.maps[bpfMapActive].Lookup(uint32(0), &gen)
	return gen, err
}

// Reload swaps in a new rule set without detaching anything: the inactive
// generation is built and filled completely, programs the new rules need
// are loaded and attached, and only then does one write flip the active
// generation. Every decision is made under the old policy or the new one,
// never under none. On error the old policy stays in force.
func (inst *Instance) Reload(r Rules, audit bool) error {
	gen, err := inst.ActiveGeneration()
	if err != nil {
		return fmt.Errorf("read the active generation: %w", err)
	}
	next := 1 - gen
	if err := inst.install(next, r, audit); err != nil {
		return err
	}
	if inst.attached {
		if err := inst.loadPrograms(r, inst.cfg.Trace); err != nil {
			return err
		}
		had := len(inst.links)
		if err := inst.attachMissing(); err != nil {
			return err
		}
		// A pinned instance must keep the new links when this process
		// exits (`assay reload` does right away), like its others.
		if err := inst.pinLinks(inst.links[had:]); err != nil {
			return err
		}
	}
	if err := inst.maps[bpfMapActive].Put(uint32(0), next); err != nil {
		return fmt.Errorf("switch to the new policy: %w", err)
	}
	// Verdicts cached under the old policy must not be used again.
	if err := inst.InvalidateVerdicts(); err != nil {
		return fmt.Errorf("the new policy is in force, but verdicts cached under the old one may still be used: %w", err)
	}
	inst.cfg.Rules, inst.cfg.Audit = r, audit
	return nil
}

// Close detaches every program (unless pinned) and releases every handle.
func (inst *Instance) Close() error {
	var err error
	if inst.pinDir == "" {
		err = inst.Detach()
	} else {
		err = inst.release()
	}
	for _, p := range inst.progs {
		p.Close()
	}
	inst.closeAgg()
	for _, m := range inst.maps {
		m.Close()
	}
	inst.progs, inst.maps = nil, nil
	return err
}

// ReleaseStartup frees what only the start-up needed, once the instance
// is loaded and attached: the specs of the programs it loaded (a reload
// loads only the programs it misses) and the process-wide caches
// (ReleaseCaches).
func (inst *Instance) ReleaseStartup() {
	for name := range inst.spec.Programs {
		if inst.progs[name] != nil || inst.isAttached(name) {
			delete(inst.spec.Programs, name)
		}
	}
	ReleaseCaches()
}
