// Package report collects benchmark results as rows (one JSON object per
// line), and renders them as the table `make bench` prints and
// docs/BENCHMARKS.md.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
)

// Row is one measured figure: a median over rounds, with the raw rounds,
// and, for overheads, the baseline measured in the same run.
type Row struct {
	Figure string `json:"figure"` // "1 connect", "2 open (VM)", ...
	Case   string `json:"case"`   // e.g. "tcp4 connect+close"
	// Variant is what was measured against the baseline, e.g. "100k CIDRs + 1k ports".
	Variant string    `json:"variant"`
	Unit    string    `json:"unit"` // "ns/op", "events/s", "ms", "MiB", ...
	Value   float64   `json:"value"`
	Raw     []float64 `json:"raw,omitempty"`
	// Baseline and BaseRaw are the baseline's median and rounds (when the
	// row is an overhead); Overhead is the median of the per-round ratios
	// minus one, in percent.
	Baseline float64   `json:"baseline,omitempty"`
	BaseRaw  []float64 `json:"base_raw,omitempty"`
	Overhead *float64  `json:"overhead_pct,omitempty"`
	// Spread is the interquartile range of the per-round overheads, in
	// percentage points (how much the figure moves between rounds).
	Spread *float64 `json:"spread_pct,omitempty"`
	Target string   `json:"target,omitempty"` // e.g. "<= 3%"
	Met    string   `json:"met,omitempty"`    // "yes", "no", "" (no target)
	Note   string   `json:"note,omitempty"`
}

// Median of xs (NaN when empty).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Quantile of xs by linear interpolation, q in [0, 1].
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Overhead fills Value, Baseline, Overhead and Spread from paired rounds
// (raw[i] was measured next to base[i]) and judges it against limit (in
// percent; NaN: no target).
func (r *Row) SetOverhead(raw, base []float64, limit float64) {
	r.Raw, r.BaseRaw = raw, base
	r.Value, r.Baseline = Median(raw), Median(base)
	n := min(len(raw), len(base))
	ratios := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if base[i] > 0 {
			ratios = append(ratios, (raw[i]/base[i]-1)*100)
		}
	}
	ov := Median(ratios)
	sp := Quantile(ratios, 0.75) - Quantile(ratios, 0.25)
	r.Overhead, r.Spread = &ov, &sp
	if !math.IsNaN(limit) {
		r.Target = fmt.Sprintf("<= %g%%", limit)
		r.Met = yesNo(ov <= limit)
	}
}

// JudgeAboveFloor judges an overhead row against a floor measured in the
// same rounds (e.g. an empty program on the same hook): met when the
// overhead is at most points percentage points above the floor's. It
// returns the floor's overhead, for the note.
func (r *Row) JudgeAboveFloor(floorRaw []float64, points float64) float64 {
	var fl Row
	fl.SetOverhead(floorRaw, r.BaseRaw, math.NaN())
	r.Target = fmt.Sprintf("<= floor %+.1f%% + %g pts", *fl.Overhead, points)
	r.Met = yesNo(r.Overhead != nil && *r.Overhead-*fl.Overhead <= points)
	return *fl.Overhead
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Judge sets Target and Met for a plain value: want "<=" or ">=" limit.
func (r *Row) Judge(op string, limit float64, unit string) {
	r.Target = fmt.Sprintf("%s %g %s", op, limit, unit)
	switch op {
	case "<=":
		r.Met = yesNo(r.Value <= limit)
	case ">=":
		r.Met = yesNo(r.Value >= limit)
	}
}

// Sink appends rows to a JSON-lines file ($BENCH_OUT) and keeps them.
type Sink struct {
	mu   sync.Mutex
	path string
	rows []Row
}

// NewSink writes to path ("" keeps the rows in memory only).
func NewSink(path string) *Sink { return &Sink{path: path} }

// Add records a row.
func (s *Sink) Add(r Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, r)
	if s.path == "" {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Marker prefixes a row printed on a console (the VM's serial line), so
// that it can be picked out of a log.
const Marker = "ASSAY-BENCH-ROW: "

// Line is the row as one marker line.
func (r Row) Line() string {
	b, _ := json.Marshal(r)
	return Marker + string(b)
}

// Parse reads rows from JSON lines, or from a log holding marker lines
// (other lines are skipped).
func Parse(data []byte) ([]Row, error) {
	var rows []Row
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, Marker); i >= 0 {
			line = line[i+len(Marker):]
		} else if !strings.HasPrefix(line, "{") {
			continue
		}
		var r Row
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return rows, fmt.Errorf("bad row %q: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Fmt formats a value compactly.
func Fmt(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// FmtPct formats a percentage with its sign.
func FmtPct(p *float64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%+.1f%%", *p)
}

// Table renders rows as a Markdown table (also readable as plain text).
func Table(rows []Row) string {
	var sb strings.Builder
	sb.WriteString("| figure | case | variant | median | baseline | overhead (IQR) | target | met |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		base := ""
		if r.Baseline != 0 {
			base = Fmt(r.Baseline) + " " + r.Unit
		}
		ov := FmtPct(r.Overhead)
		if ov != "" && r.Spread != nil {
			ov += fmt.Sprintf(" (±%.1f)", *r.Spread/2)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s %s | %s | %s | %s | %s |\n",
			r.Figure, r.Case, r.Variant, Fmt(r.Value), r.Unit, base, ov, r.Target, r.Met)
	}
	return sb.String()
}

// RawTable lists every row's rounds.
func RawTable(rows []Row) string {
	var sb strings.Builder
	sb.WriteString("| figure | case | variant | unit | rounds | baseline rounds | note |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Figure, r.Case, r.Variant, r.Unit,
			joinF(r.Raw), joinF(r.BaseRaw), r.Note)
	}
	return sb.String()
}

func joinF(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = Fmt(x)
	}
	return strings.Join(s, " ")
}
