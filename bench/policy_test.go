package bench_test

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/kernel"
	"github.com/assaymcp/assay/internal/policy"
	"github.com/assaymcp/assay/internal/session"
	"github.com/cilium/ebpf"
)

// Key layouts of the rule maps (internal/kernel/bpf: assay_lpm_v4_key,
// assay_lpm_v6_key, assay_file_key).
type lpm4Key struct {
	Prefixlen uint32
	Addr      [4]byte
}

type lpm6Key struct {
	Prefixlen uint32
	Addr      [16]byte
}

// fileRule mirrors struct assay_file_rule (bpf/file_rules.h): the rule id
// and its access bits.
type fileRule struct {
	ID     uint32
	Access uint32
}

type fileKey struct {
	Dev uint32
	_   uint32
	Ino uint64
}

// fillMap creates one generation's inner map of the named rule map as the
// loader does (internal/kernel: install), sized for len(keys), and fills
// it with one batch update where the kernel supports it. It returns the
// map (closed by the caller), whether the batch call was used, and the
// map's memory as the kernel accounts it.
func fillMap[K, V any](b *testing.B, spec *ebpf.CollectionSpec, name string, keys []K, vals []V) (*ebpf.Map, bool, uint64) {
	b.Helper()
	ms := spec.Maps[name]
	if ms == nil || ms.InnerMap == nil {
		b.Fatalf("BPF object has no array-of-maps %q: update bench/policy_test.go", name)
	}
	in := ms.InnerMap.Copy()
	in.MaxEntries = uint32(max(len(keys), 1))
	m, err := ebpf.NewMap(in)
	if err != nil {
		b.Fatalf("create %s: %v", name, err)
	}
	batch := true
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			b.Fatalf("batch update %s: %v", name, err)
		}
		batch = false
		for i := range keys {
			if err := m.Update(&keys[i], &vals[i], ebpf.UpdateAny); err != nil {
				b.Fatalf("update %s: %v", name, err)
			}
		}
	}
	var mem uint64
	if info, err := m.Info(); err == nil {
		mem, _ = info.Memlock()
	}
	return m, batch, mem
}

// heapDelta runs f and returns the bytes it allocated and how much of it
// was still live after a GC.
func heapDelta(f func()) (alloc, live uint64) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	f()
	runtime.ReadMemStats(&m1)
	alloc = m1.TotalAlloc - m0.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if m1.HeapAlloc > m0.HeapAlloc {
		live = m1.HeapAlloc - m0.HeapAlloc
	}
	return alloc, live
}

const mib = 1 << 20

// BenchmarkPolicyScale is figure 5: time and memory to load 100k CIDRs
// (half IPv4, half IPv6) and 1k ports, and 100k file rules. Phases are
// timed in this process with the product's own code (policy.Load,
// session.Compile: parsing and path resolution) and the loader's map
// layout (one generation's inner maps, filled with one batch update); the
// CIDR policy is also timed end to end (`assay monitor` from exec to its
// "enforcing" line), with its peak RSS and the kernel memory of its maps.
// File rules cannot be loaded into the host kernel (it refuses BPF LSM), so
// their end-to-end figure comes from the QEMU guest (figure 2).
func BenchmarkPolicyScale(b *testing.B) {
	privileged(b)
	spec, err := kernel.LoadSpec("")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cidrPath := writePolicy(b, "cidrs.yaml", gen.NetPolicy(50000, 50000, 1000,
		[]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}, nil, false))
	nFiles := 100000
	if quick() {
		nFiles = 10000
	}
	var files []string
	mk := elapsed(func() { files, err = gen.MakeFiles(dir, nFiles) })
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d files in %.0f ms", nFiles, mk)
	filePath := writePolicy(b, "files.yaml", gen.FilePolicy(files, nil))

	R := max(rounds()/2, 3)
	type phases struct{ parse, compile, maps, total []float64 }
	var cp, fp phases
	var cAlloc, cLive, fAlloc, fLive uint64
	var cBatch, fBatch bool
	var cMem, fMem uint64
	for r := 0; r < R; r++ {
		// CIDRs.
		var p *policy.Policy
		var rules kernel.Rules
		t0 := time.Now()
		alloc, live := heapDelta(func() {
			p, err = policy.Load(cidrPath)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			cp.parse = append(cp.parse, ms(t1.Sub(t0)))
			if rules, err = session.Compile(p); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			cp.compile = append(cp.compile, ms(t2.Sub(t1)))
			var k4 []lpm4Key
			var v4 []uint32
			var l6 []lpm6Key
			var v6 []uint32
			for _, c := range rules.DenyCIDRs {
				if c.Prefix.Addr().Is4() {
					k4 = append(k4, lpm4Key{uint32(c.Prefix.Bits()), c.Prefix.Addr().As4()})
					v4 = append(v4, c.ID)
				} else {
					l6 = append(l6, lpm6Key{uint32(c.Prefix.Bits()), c.Prefix.Addr().As16()})
					v6 = append(v6, c.ID)
				}
			}
			m4, b4, mem4 := fillMap(b, spec, "deny_v4", k4, v4)
			m6, b6, mem6 := fillMap(b, spec, "deny_v6", l6, v6)
			t3 := time.Now()
			cp.maps = append(cp.maps, ms(t3.Sub(t2)))
			cp.total = append(cp.total, ms(t3.Sub(t0)))
			cBatch, cMem = b4 && b6, mem4+mem6
			m4.Close()
			m6.Close()
		})
		cAlloc, cLive = alloc, live

		// Files.
		t0 = time.Now()
		alloc, live = heapDelta(func() {
			p, err = policy.Load(filePath)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			fp.parse = append(fp.parse, ms(t1.Sub(t0)))
			if rules, err = session.Compile(p); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			fp.compile = append(fp.compile, ms(t2.Sub(t1)))
			keys := make([]fileKey, len(rules.Files))
			vals := make([]fileRule, len(rules.Files))
			for i, f := range rules.Files {
				keys[i] = fileKey{Dev: f.Dev, Ino: f.Ino}
				vals[i] = fileRule{ID: f.ID, Access: uint32(f.Access)}
			}
			m, batch, mem := fillMap(b, spec, "file_rules", keys, vals)
			t3 := time.Now()
			fp.maps = append(fp.maps, ms(t3.Sub(t2)))
			fp.total = append(fp.total, ms(t3.Sub(t0)))
			fBatch, fMem = batch, mem
			m.Close()
		})
		fAlloc, fLive = alloc, live
	}

	// End to end: `assay monitor` with the CIDR policy, against the
	// 10-rule policy, in interleaved rounds.
	small := writePolicy(b, "small.yaml", gen.SmallNetPolicy())
	cg, _ := benchCgroup(b)
	null := devNull(b)
	var e2eBig, e2eSmall, hwm []float64
	var mapMem map[string]uint64
	for r := 0; r < R; r++ {
		for k := 0; k < 2; k++ {
			if (k+r)%2 == 0 {
				m := startMonitor(b, null, "--policy", small, "--cgroup", cg.Path)
				e2eSmall = append(e2eSmall, ms(m.Ready))
				m.Stop(b)
				continue
			}
			m := startMonitor(b, null, "--policy", cidrPath, "--cgroup", cg.Path)
			e2eBig = append(e2eBig, ms(m.Ready))
			hwm = append(hwm, float64(procStatusKiB(m.Pid(), "VmHWM"))/1024)
			pb, err := harness.ReadProcBPF(m.Pid())
			if err != nil {
				b.Fatal(err)
			}
			mapMem = pb.Maps
			m.Stop(b)
		}
	}

	batchWord := map[bool]string{true: "one batch update", false: "per-element updates (no batch support)"}
	fig := "5 policy scale"
	for _, ph := range []struct {
		name string
		v    []float64
	}{{"parse (policy.Load)", cp.parse}, {"compile (session.Compile)", cp.compile}, {"create + fill maps", cp.maps}} {
		record(b, report.Row{Figure: fig, Case: "100k CIDRs + 1k ports", Variant: ph.name, Unit: "ms", Value: report.Median(ph.v), Raw: ph.v})
	}
	row := report.Row{Figure: fig, Case: "100k CIDRs + 1k ports", Variant: "total in process", Unit: "ms", Value: report.Median(cp.total), Raw: cp.total}
	row.Judge("<=", 1000, "ms")
	row.Note = fmt.Sprintf("LPM tries: %s; map memory %.1f MiB (memlock); Go heap allocated %.0f MiB, live after %.0f MiB",
		batchWord[cBatch], float64(cMem)/mib, float64(cAlloc)/mib, float64(cLive)/mib)
	record(b, row)
	row = report.Row{Figure: fig, Case: "100k CIDRs + 1k ports", Variant: "`assay monitor` start to enforcing", Unit: "ms",
		Value: report.Median(e2eBig), Raw: e2eBig, Baseline: report.Median(e2eSmall), BaseRaw: e2eSmall}
	row.Judge("<=", 1000, "ms")
	row.Note = fmt.Sprintf("baseline: the 10-rule policy; peak RSS %.0f MiB; kernel map memory: %s", report.Median(hwm), fmtMaps(mapMem))
	record(b, row)

	for _, ph := range []struct {
		name string
		v    []float64
	}{{"parse (policy.Load)", fp.parse}, {"resolve paths (session.Compile)", fp.compile}, {"create + fill map", fp.maps}} {
		record(b, report.Row{Figure: fig, Case: fmt.Sprintf("%dk file rules", nFiles/1000), Variant: ph.name, Unit: "ms", Value: report.Median(ph.v), Raw: ph.v})
	}
	row = report.Row{Figure: fig, Case: fmt.Sprintf("%dk file rules", nFiles/1000), Variant: "total in process", Unit: "ms", Value: report.Median(fp.total), Raw: fp.total}
	row.Judge("<=", 1000, "ms")
	row.Note = fmt.Sprintf("file_rules: %s; map memory %.1f MiB (memlock); Go heap allocated %.0f MiB, live after %.0f MiB",
		batchWord[fBatch], float64(fMem)/mib, float64(fAlloc)/mib, float64(fLive)/mib)
	record(b, row)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// fmtMaps lists the largest maps and the total.
func fmtMaps(m map[string]uint64) string {
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	var total uint64
	for k, v := range m {
		all = append(all, kv{k, v})
		total += v
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, e := range all {
		if i == 5 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", e.k, float64(e.v)/mib))
	}
	return fmt.Sprintf("total %.1f MiB (%s)", float64(total)/mib, strings.Join(parts, ", "))
}
