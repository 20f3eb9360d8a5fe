package harness

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProcBPF lists the BPF program and map ids a process holds descriptors
// of (see ReadProcBPF).
type ProcBPF struct {
	Progs  []ebpf.ProgramID
	Maps   map[string]uint64 // map name -> memlock bytes (inner maps included)
	MapIDs []ebpf.MapID
}

// ReadProcBPF reads /proc/PID/fdinfo: the process's programs and maps,
// with each map's memory as the kernel accounts it (fdinfo "memlock"),
// counting the inner maps of arrays of maps.
func ReadProcBPF(pid int) (ProcBPF, error) {
	out := ProcBPF{Maps: map[string]uint64{}}
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out, err
	}
	seenMap := map[uint64]bool{}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		kv := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok {
				kv[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
		if id, ok := kv["prog_id"]; ok {
			n, _ := strconv.ParseUint(id, 10, 32)
			out.Progs = append(out.Progs, ebpf.ProgramID(n))
		}
		if id, ok := kv["map_id"]; ok {
			n, _ := strconv.ParseUint(id, 10, 32)
			if seenMap[n] {
				continue
			}
			seenMap[n] = true
			out.MapIDs = append(out.MapIDs, ebpf.MapID(n))
			mem, _ := strconv.ParseUint(kv["memlock"], 10, 64)
			name := fmt.Sprint(n)
			if m, err := ebpf.NewMapFromID(ebpf.MapID(n)); err == nil {
				if info, err := m.Info(); err == nil && info.Name != "" {
					name = info.Name
				}
				// The rule maps are arrays of maps: count the inner maps
				// (one per policy generation) the outer map refers to.
				if m.Type() == ebpf.ArrayOfMaps || m.Type() == ebpf.HashOfMaps {
					var key uint32
					var inner ebpf.MapID
					it := m.Iterate()
					for it.Next(&key, &inner) {
						if im, err := ebpf.NewMapFromID(inner); err == nil {
							if ii, err := im.Info(); err == nil {
								if v, ok := ii.Memlock(); ok {
									mem += v
								}
							}
							im.Close()
						}
					}
				}
				m.Close()
			}
			out.Maps[name] += mem
		}
	}
	return out, nil
}

// ProgRun is one program's run-time counters (bpf_stats).
type ProgRun struct {
	name string
	ns   uint64
	cnt  uint64
}

// ProgRuns reads the run-time counters of a process's programs, by name.
func ProgRuns(tb testing.TB, pid int) map[string]ProgRun {
	tb.Helper()
	pb, err := ReadProcBPF(pid)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]ProgRun{}
	for _, id := range pb.Progs {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		st, serr := p.Stats()
		p.Close()
		if err != nil || serr != nil {
			continue
		}
		r := out[info.Name]
		r.name = info.Name
		r.ns += uint64(st.Runtime)
		r.cnt += st.RunCount
		out[info.Name] = r
	}
	return out
}

// PerRun is the ns per run of each program between two readings.
func PerRun(before, after map[string]ProgRun) map[string]float64 {
	out := map[string]float64{}
	for name, a := range after {
		bf := before[name]
		if d := a.cnt - bf.cnt; d > 0 {
			out[name] = float64(a.ns-bf.ns) / float64(d)
		}
	}
	return out
}

// WithBPFStats turns on the kernel's BPF run-time statistics for f.
func WithBPFStats(tb testing.TB, f func()) {
	tb.Helper()
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		tb.Fatalf("enable BPF stats: %v", err)
	}
	defer c.Close()
	f()
}
