package bench_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assaymcp/assay/bench/gen"
	"github.com/assaymcp/assay/bench/harness"
	"github.com/assaymcp/assay/bench/load"
	"github.com/assaymcp/assay/bench/report"
	"github.com/assaymcp/assay/internal/assaytest"
	"github.com/assaymcp/assay/internal/seccomp"
	"golang.org/x/net/bpf"
)

// seccompFile writes Assay's seccomp filter (the one `assay run` installs)
// as raw struct sock_filter records, for `bwrap --seccomp FD`.
func seccompFile(b *testing.B) string {
	b.Helper()
	prog, err := seccomp.Program()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	for _, in := range raw {
		binary.Write(&buf, binary.NativeEndian, struct {
			Op     uint16
			Jt, Jf uint8
			K      uint32
		}{in.Op, in.Jt, in.Jf, in.K})
	}
	p := filepath.Join(b.TempDir(), "seccomp.bpf")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// toolVersion is the first line of `tool ARG`.
func toolVersion(tool, arg string) string {
	out, _ := exec.Command(tool, arg).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// cpuMS collects the CPU time (user + system, the process and its waited-for
// children) of each wallRun, by program: a figure the machine's load does
// not inflate the way it inflates wall time.
var cpuMS = map[string][]float64{}

// wallRun runs cmd to completion and returns its wall time in ms.
func wallRun(b *testing.B, cmd *exec.Cmd) float64 {
	b.Helper()
	null := devNull(b)
	cmd.Stdout, cmd.Stderr = null, null
	t := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%q: %v", cmd.Args, err)
	}
	wall := ms(time.Since(t))
	key := filepath.Base(cmd.Args[0])
	if len(cmd.Args) > 1 && cmd.Args[1] == "run" {
		key += " run"
	}
	cpuMS[key] = append(cpuMS[key], ms(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()))
	return wall
}

// cpuNote is the median CPU time of key's runs.
func cpuNote(key string) string {
	return fmt.Sprintf("; CPU time (user + system) %s ms, median", report.Fmt(report.Median(cpuMS[key])))
}

// BenchmarkStartup is figure 6: what Assay adds to starting a program.
// `assay run -- /bin/true` against `/bin/true` (exec to exit, the default
// built-in policy, output to /dev/null), and `assay monitor` from exec to
// its "enforcing" line (the 10-rule policy and the built-in one), against
// exec to exit of /bin/true. Interleaved rounds; the figure is the median
// of per-round differences.
func BenchmarkStartup(b *testing.B) {
	privileged(b)
	bin := assaytest.Binary(b)
	small := writePolicy(b, "small.yaml", gen.SmallNetPolicy())
	cg, _ := benchCgroup(b)
	null := devNull(b)
	R := 2 * rounds()

	// Does this assay have `run`?
	hasRun := exec.Command(bin, "run", "--help").Run() == nil

	// The peers, with comparable restrictions: another user, no
	// capabilities, no_new_privs, a seccomp filter (bwrap gets Assay's own
	// filter; firejail its default one).
	filter := seccompFile(b)
	bwrap := func() *exec.Cmd {
		f, err := os.Open(filter)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		cmd := exec.Command("bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
			"--uid", "65534", "--gid", "65534", "--new-session", "--die-with-parent", "--cap-drop", "ALL", "--seccomp", "3", "/bin/true")
		cmd.ExtraFiles = []*os.File{f}
		return cmd
	}
	firejail := func() *exec.Cmd {
		return exec.Command("firejail", "--quiet", "--noprofile", "--caps.drop=all", "--nonewprivs", "--seccomp", "--noroot", "/bin/true")
	}
	for _, tool := range []string{"bwrap", "firejail"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found (make bench-deps): %v", tool, err)
		}
	}

	var tTrue, tRun, tMonSmall, tMonExample, tBwrap, tFirejail []float64
	for r := 0; r < R; r++ {
		tTrue = append(tTrue, wallRun(b, exec.Command("/bin/true")))
		if hasRun {
			tRun = append(tRun, wallRun(b, exec.Command(bin, "run", "--", "/bin/true")))
		}
		tBwrap = append(tBwrap, wallRun(b, bwrap()))
		tFirejail = append(tFirejail, wallRun(b, firejail()))
		m := startMonitor(b, null, "--policy", small, "--cgroup", cg.Path)
		tMonSmall = append(tMonSmall, ms(m.Ready))
		m.Stop(b)
		m = startMonitor(b, null, "--cgroup", cg.Path)
		tMonExample = append(tMonExample, ms(m.Ready))
		m.Stop(b)
	}
	fig := "6 startup"
	row := report.Row{Figure: fig, Case: "/bin/true", Variant: "baseline", Unit: "ms", Value: report.Median(tTrue), Raw: tTrue, Note: strings.TrimPrefix(cpuNote("true"), "; ")}
	record(b, row)
	added := func(name, variant string, xs []float64, note string) {
		row := report.Row{Figure: fig, Case: name, Variant: variant, Unit: "ms", Raw: xs, BaseRaw: tTrue}
		d := make([]float64, len(xs))
		for i := range xs {
			d[i] = xs[i] - tTrue[i]
		}
		row.Value, row.Baseline = report.Median(d), report.Median(tTrue)
		if !strings.Contains(name, "(peer)") {
			row.Judge("<=", 150, "ms added")
		}
		row.Note = note
		record(b, row)
	}
	if hasRun {
		added("`assay run -- /bin/true`", "added to /bin/true, built-in policy", tRun, fmt.Sprintf("exec to exit; median total %s ms", report.Fmt(report.Median(tRun)))+cpuNote(filepath.Base(bin)+" run"))
	} else {
		record(b, report.Row{Figure: fig, Case: "`assay run -- /bin/true`", Variant: "added to /bin/true", Unit: "ms", Value: nan,
			Note: "this assay has no `run` command"})
	}
	added("`bwrap -- /bin/true` (peer)", "added to /bin/true", tBwrap, fmt.Sprintf("bubblewrap %s: --unshare-all, uid 65534, --cap-drop ALL, --new-session, Assay's seccomp filter (no network or file policy); median total %s ms",
		toolVersion("bwrap", "--version"), report.Fmt(report.Median(tBwrap)))+cpuNote("bwrap"))
	added("`firejail -- /bin/true` (peer)", "added to /bin/true", tFirejail, fmt.Sprintf("%s: --noprofile --caps.drop=all --nonewprivs --seccomp --noroot (no network or file policy); median total %s ms",
		toolVersion("firejail", "--version"), report.Fmt(report.Median(tFirejail)))+cpuNote("firejail"))
	added("`assay monitor` to enforcing", "10-rule policy", tMonSmall, "exec to the \"enforcing\" line")
	added("`assay monitor` to enforcing", "built-in example policy", tMonExample, "exec to the \"enforcing\" line")
}

// BenchmarkFootprint is figure 7: the memory of `assay monitor` (10-rule
// policy plus a denied port, text output to /dev/null, --rate-limit 0 so
// that every event is rendered) idle, and while producers in its cgroup
// make 100k denied sendto calls per second (100k events/s) for a few
// seconds. RSS is sampled every 100 ms from /proc/PID/status; RssFile
// includes the pages of the 16 MiB event ring buffer mapped into the
// monitor.
func BenchmarkFootprint(b *testing.B) {
	privileged(b)
	pol := writePolicy(b, "footprint.yaml", gen.SmallNetPolicyDenying(9))
	cg, cgfd := benchCgroup(b)
	null := devNull(b)
	d := 5 * time.Second
	if quick() {
		d = 2 * time.Second
	}
	R := max(rounds()/3, 1)
	var idle, idleAnon, idleMapped, busy, busyAnon, busyMapped, hwm []float64
	var emitted, attempts int64
	for r := 0; r < R; r++ {
		m := startMonitor(b, null, "--policy", pol, "--cgroup", cg.Path, "--rate-limit", "0")
		time.Sleep(time.Second)
		idle = append(idle, float64(procStatusKiB(m.Pid(), "VmRSS"))/1024)
		idleAnon = append(idleAnon, float64(procStatusKiB(m.Pid(), "RssAnon"))/1024)
		idleMapped = append(idleMapped, float64(harness.MappedBPFKiB(m.Pid()))/1024)
		start := load.MonoNow() + int64(20*time.Millisecond)
		var procs []*load.Process
		for i := 0; i < 2; i++ {
			p, err := load.Start(self(b), cgfd, load.Options{Action: load.UDPSendto, Target: "127.0.0.1:9", Rate: 50000, Duration: d, StartAt: start, CPU: -1})
			if err != nil {
				b.Fatal(err)
			}
			procs = append(procs, p)
		}
		var peak, peakAnon, peakMapped float64
		done := make(chan struct{})
		go func() {
			for _, p := range procs {
				res, err := p.Wait()
				if err == nil {
					attempts += res.EPERM
				}
			}
			close(done)
		}()
	sample:
		for {
			select {
			case <-done:
				break sample
			case <-time.After(100 * time.Millisecond):
				peak = max(peak, float64(procStatusKiB(m.Pid(), "VmRSS"))/1024)
				peakAnon = max(peakAnon, float64(procStatusKiB(m.Pid(), "RssAnon"))/1024)
				peakMapped = max(peakMapped, float64(harness.MappedBPFKiB(m.Pid()))/1024)
			}
		}
		busy = append(busy, peak)
		busyAnon = append(busyAnon, peakAnon)
		busyMapped = append(busyMapped, peakMapped)
		hwm = append(hwm, float64(procStatusKiB(m.Pid(), "VmHWM"))/1024)
		emitted += int64(readCounters(b, m.Pid()).emitted[pathSocket])
		m.Stop(b)
	}
	fig := "7 footprint"
	record(b, report.Row{Figure: fig, Case: "`assay monitor` RSS", Variant: "idle (1 s after start)", Unit: "MiB", Value: report.Median(idle), Raw: idle,
		Note: fmt.Sprintf("of which the event ring buffer mapped from the kernel %.1f MiB (16 MiB, its data pages mapped twice: kernel memory, counted once under map memory), anonymous (Go heap, stacks) %.1f MiB, the rest the binary's pages",
			report.Median(idleMapped), report.Median(idleAnon))})
	record(b, report.Row{Figure: fig, Case: "`assay monitor` RSS", Variant: "at 100k events/s (peak of 100 ms samples)", Unit: "MiB", Value: report.Median(busy), Raw: busy,
		Note: fmt.Sprintf("ring buffer mapping %.1f MiB, anonymous %.1f MiB; VmHWM %.1f MiB; %d events emitted of %d attempts over %d runs of %v, all rendered (text to /dev/null)",
			report.Median(busyMapped), report.Median(busyAnon), report.Median(hwm), emitted, attempts, R, d)})
}
