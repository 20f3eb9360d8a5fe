// Command benchreport turns the rows `make bench` collected into
// docs/BENCHMARKS.md and prints the result table.
//
//	benchreport -host host.jsonl -vm vm.log [-assay BIN] [-o docs/BENCHMARKS.md]
//
// Rows come from the host benchmarks (JSON lines) and from the guest's
// serial log (marker lines, see bench/report). The prose of the document is
// bench/BENCHMARKS.md.tmpl (a text/template); the tables, the machine and
// the raw numbers are filled in here.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/assaymcp/assay/bench/report"
)

func main() {
	host := flag.String("host", ".cache/bench/host.jsonl", "host rows (JSON lines)")
	vm := flag.String("vm", ".cache/bench/vm.log", "the guest's serial log (marker lines)")
	assay := flag.String("assay", "", "the assay binary measured (for its version)")
	durations := flag.String("durations", "", "how long each part took, for the record")
	load := flag.String("load", "", "the machine's load averages during the run, for the record")
	tmpl := flag.String("tmpl", "bench/BENCHMARKS.md.tmpl", "document template")
	out := flag.String("o", "docs/BENCHMARKS.md", "document to write (- for stdout only)")
	flag.Parse()

	var rows []report.Row
	var vmLog []byte
	for _, src := range []string{*host, *vm} {
		data, err := os.ReadFile(src)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "benchreport: %s: missing (that part did not run)\n", src)
			continue
		}
		if err != nil {
			fatal(err)
		}
		if src == *vm {
			vmLog = data
		}
		rs, err := report.Parse(data)
		if err != nil {
			fatal(fmt.Errorf("%s: %w", src, err))
		}
		rows = append(rows, rs...)
	}
	sort.SliceStable(rows, func(i, j int) bool { return figNum(rows[i].Figure) < figNum(rows[j].Figure) })
	for i := range rows {
		if strings.Contains(rows[i].Case, "(peer)") {
			rows[i].Target, rows[i].Met = "", "" // assay's targets are not the peers'
		}
	}

	d := data{
		Date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Commit:    commit(),
		Machine:   machine(*assay),
		Guest:     guest(vmLog),
		Durations: *durations,
		Load:      *load,
		Choose:    choose(rows),
		Summary:   summary(rows),
		All:       report.Table(rows),
		Raw:       report.RawTable(rows),
		Figures:   map[string]string{},
	}
	byFig := map[string][]report.Row{}
	for _, r := range rows {
		byFig[figKey(r.Figure)] = append(byFig[figKey(r.Figure)], r)
	}
	for k, rs := range byFig {
		d.Figures[k] = figureTable(rs)
	}
	for _, k := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"} {
		if _, ok := byFig[k]; !ok {
			d.Missing = append(d.Missing, k)
			d.Figures[k] = "_Not measured in this run._\n"
		}
	}

	fmt.Print(d.Summary)
	if *out == "-" {
		return
	}
	// Charts next to the document (docs/bench/*.svg).
	chartDir := filepath.Join(filepath.Dir(*out), "bench")
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		fatal(err)
	}
	for name, svg := range charts(rows) {
		if err := os.WriteFile(filepath.Join(chartDir, name), []byte(svg), 0o644); err != nil {
			fatal(err)
		}
		d.Charts = append(d.Charts, "bench/"+name)
	}
	sort.Strings(d.Charts)
	t, err := template.ParseFiles(*tmpl)
	if err != nil {
		fatal(err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "benchreport: wrote %s (%d rows)\n", *out, len(rows))
}

type data struct {
	Date, Commit, Guest, Durations, Load, Choose string
	Charts                                       []string
	Machine                                      []kv
	Summary, All, Raw                            string
	Figures                                      map[string]string // "1".."7"
	Missing                                      []string
}

type kv struct{ K, V string }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}

var figRE = regexp.MustCompile(`^([0-9]+)`)

func figKey(f string) string { return figRE.FindString(f) }

func figNum(f string) int {
	var n int
	fmt.Sscan(figKey(f), &n)
	return n
}

// summary is one line per row with a target.
func summary(rows []report.Row) string {
	var sb strings.Builder
	sb.WriteString("| figure | case | variant | measured | target | met |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.Target == "" {
			continue
		}
		v := report.Fmt(r.Value) + " " + r.Unit
		if r.Overhead != nil {
			v = report.FmtPct(r.Overhead) + fmt.Sprintf(" (%s vs %s %s)", report.Fmt(r.Value), report.Fmt(r.Baseline), r.Unit)
		}
		met := r.Met
		if met == "no" {
			met = "**no**"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, r.Case, r.Variant, v, r.Target, met)
	}
	return sb.String()
}

// figureTable is the rows of one figure with their notes.
func figureTable(rows []report.Row) string {
	var sb strings.Builder
	sb.WriteString("| case | variant | median | baseline | overhead (± half IQR) | target | met | notes |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		base := ""
		if r.Baseline != 0 {
			base = report.Fmt(r.Baseline) + " " + r.Unit
		}
		ov := report.FmtPct(r.Overhead)
		if ov != "" && r.Spread != nil {
			ov += fmt.Sprintf(" (±%.1f)", *r.Spread/2)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s %s | %s | %s | %s | %s | %s |\n", r.Case, r.Variant, report.Fmt(r.Value), r.Unit,
			base, ov, r.Target, r.Met, strings.ReplaceAll(r.Note, "|", "\\|"))
	}
	return sb.String()
}

func run(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func commit() string {
	c := run("git", "rev-parse", "--short", "HEAD")
	if c == "" {
		return "unknown"
	}
	if run("git", "status", "--porcelain", "--untracked-files=no") != "" {
		c += " with uncommitted changes"
	}
	return c
}

func readFirst(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
}

func machine(assay string) []kv {
	var out []kv
	add := func(k, v string) { out = append(out, kv{k, v}) }
	add("kernel", run("uname", "-srvm"))
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	add("CPU", fmt.Sprintf("%s, %d CPUs online", model, runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		add("memory", strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " "))
	}
	virt := "none detected"
	if b, _ := os.ReadFile("/proc/cpuinfo"); bytes.Contains(b, []byte(" hypervisor")) {
		virt = "a virtual machine (hypervisor CPU flag)"
	}
	add("virtualisation", virt)
	add("clocksource", readFirst("/sys/devices/system/clocksource/clocksource0/current_clocksource"))
	var mit []string
	for _, v := range []string{"spectre_v2", "spec_rstack_overflow", "retbleed"} {
		mit = append(mit, v+": "+readFirst("/sys/devices/system/cpu/vulnerabilities/"+v))
	}
	add("mitigations", strings.Join(mit, "; "))
	add("Go", runtime.Version())
	if assay != "" {
		add("assay", run(assay, "version"))
	}
	return out
}

var guestRE = regexp.MustCompile(`vmtest-init: kernel ([^,]+), ([0-9]+) CPUs, LSMs: (\S+)`)

func guest(log []byte) string {
	m := guestRE.FindSubmatch(log)
	if m == nil {
		return "not run"
	}
	return fmt.Sprintf("Linux %s (Debian cloud kernel), %s vCPUs under QEMU TCG (software emulation), LSMs %s", m[1], m[2], m[3])
}

// find is the first row of figure (prefix), case and variant (substrings).
func find(rows []report.Row, fig, cse, variant string) *report.Row {
	for i := range rows {
		r := &rows[i]
		if strings.HasPrefix(r.Figure, fig) && strings.Contains(r.Case, cse) && strings.Contains(r.Variant, variant) {
			return r
		}
	}
	return nil
}

// cellOr is the first row's cell, or the second's when the first is missing.
func cellOr(r, alt *report.Row) string {
	if r == nil {
		return cell(alt)
	}
	return "v2 default deny, the same allow-list: " + cell(r)
}

func cell(r *report.Row) string {
	switch {
	case r == nil:
		return "not measured"
	case r.Overhead != nil:
		return fmt.Sprintf("%s (%s vs %s %s)", report.FmtPct(r.Overhead), report.Fmt(r.Value), report.Fmt(r.Baseline), r.Unit)
	}
	out := report.Fmt(r.Value) + " " + r.Unit
	if r.Baseline != 0 {
		out += fmt.Sprintf(" (baseline %s %s)", report.Fmt(r.Baseline), r.Unit)
	}
	if m := cpuRE.FindStringSubmatch(r.Note); m != nil {
		out += "; CPU time " + m[1] + " ms"
	}
	return out
}

var cpuRE = regexp.MustCompile(`CPU time \(user \+ system\) ([0-9.]+) ms`)

// choose is the "what it costs, in one table" section: each protection
// with assay and with what a user would otherwise run, from this run.
func choose(rows []report.Row) string {
	var sb strings.Builder
	sb.WriteString("| protection | assay | nftables / Landlock | bubblewrap | firejail |\n|---|---|---|---|---|\n")
	line := func(what string, cells ...string) {
		fmt.Fprintf(&sb, "| %s | %s |\n", what, strings.Join(cells, " | "))
	}
	na := "no such rule"
	line("UDP sendto in the sandbox, 100k CIDRs + 1k ports (host)", cell(find(rows, "8", "udp4 sendto", "assay")), "nftables: "+cell(find(rows, "8", "udp4 sendto", "nftables")), na, na)
	line("the same, IPv6", cell(find(rows, "8", "udp6 sendto", "assay")), "nftables: "+cell(find(rows, "8", "udp6 sendto", "nftables")), na, na)
	line("UDP sendto by other cgroups while it is in force", cell(find(rows, "8", "another cgroup", "assay")), "nftables: "+cell(find(rows, "8", "another cgroup", "nftables")), "-", "-")
	line("TCP connect+close in the sandbox, 100k CIDRs + 1k ports", cell(find(rows, "8", "tcp4 connect", "assay")), "nftables: "+cell(find(rows, "8", "tcp4 connect", "nftables")), na, na)
	line("load 100k CIDRs + 1k ports", cell(find(rows, "8", "rule load", "assay")), "nftables: "+cell(find(rows, "8", "rule load", "nftables")), "-", "-")
	line("open(), file rules, shallow file (guest, TCG)", cellOr(find(rows, "8 peers: files", "0 dirs", "same allow-list"), find(rows, "8 peers: files", "0 dirs", "assay")), "Landlock: "+cell(find(rows, "8 peers: files", "0 dirs", "Landlock: read")), "-", "-")
	line("open(), file 30 directories deep (guest, TCG)", cellOr(find(rows, "8 peers: files", "30 dirs", "same allow-list"), find(rows, "8 peers: files", "30 dirs", "assay")), "Landlock: "+cell(find(rows, "8 peers: files", "30 dirs", "Landlock: read")), "-", "-")
	ll := cell(find(rows, "8 peers: files", "start-up", "Landlock"))
	if r := find(rows, "8 peers: files", "start-up", "Landlock"); r != nil {
		ll = fmt.Sprintf("below what this measures (%s, spawn to exit with minus without: the set-up is three system calls, a spawn under TCG varies by more)", report.Fmt(r.Value)+" "+r.Unit)
	}
	line("start a sandboxed /bin/true (added, host)", cell(find(rows, "6 startup", "assay run", "added")), "Landlock launcher set-up (guest): "+ll,
		cell(find(rows, "6 startup", "bwrap", "added")), cell(find(rows, "6 startup", "firejail", "added")))
	line("DNS lookup through assay's resolver (p50; upstream directly in the row's baseline)", cell(find(rows, "10", "p50", "resolver")), "-", "-", "-")
	line("UDP sendto to an address learned from DNS, 100k learned", cell(find(rows, "10", "udp4 sendto to a learned", "learned")), "-", "-", "-")
	line("MCP request/response, small (added per round trip)", cell(find(rows, "9", "small", "assay")), "-", "-", "-")
	line("MCP request/response, 1 MiB (added per round trip)", cell(find(rows, "9", "1 MiB", "assay")), "-", "-", "-")
	return sb.String()
}

// charts draws the overheads against their baselines and the cost against
// rule count.
func charts(rows []report.Row) map[string]string {
	out := map[string]string{}
	var bars []report.Bar
	for _, r := range rows {
		if r.Overhead == nil || strings.Contains(r.Case, "against rule count") {
			continue
		}
		if k := figKey(r.Figure); k != "1" && k != "3" && k != "8" && k != "9" && k != "2" {
			continue
		}
		bars = append(bars, report.Bar{Label: trim(r.Figure+": "+r.Case+" — "+r.Variant, 90), Value: *r.Overhead})
	}
	if len(bars) > 0 {
		out["overheads.svg"] = report.BarChart("Overhead against the baseline measured in the same run (median of per-round ratios)", bars)
	}
	var series []report.Series
	for _, cse := range []string{"udp4 sendto, against rule count", "udp6 sendto, against rule count"} {
		for _, off := range []bool{false, true} {
			s := report.Series{Name: strings.TrimSuffix(cse, ", against rule count")}
			if off {
				s.Name += ", cache off"
			}
			for _, r := range rows {
				if r.Case != cse || r.Overhead == nil || strings.Contains(r.Variant, "cache off") != off {
					continue
				}
				var n float64
				if _, err := fmt.Sscan(r.Variant, &n); err != nil {
					continue
				}
				s.X = append(s.X, n)
				s.Y = append(s.Y, *r.Overhead)
			}
			if len(s.X) > 0 {
				series = append(series, s)
			}
		}
	}
	if len(series) > 0 {
		out["rulecount.svg"] = report.LineChart("UDP sendto: overhead against the number of CIDRs (+ 1k ports)", "CIDRs in the policy", "overhead, % of the baseline", series)
	}
	return out
}

func trim(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
