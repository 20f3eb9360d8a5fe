package report

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Bar is one bar of BarChart: an overhead in percent.
type Bar struct {
	Label string
	Value float64
}

// BarChart draws horizontal bars (overheads in percent against their
// baselines), labelled, with a zero line: a standalone SVG.
func BarChart(title string, bars []Bar) string {
	const labelW, barW, rowH, top = 470, 330, 18, 34
	lo, hi := 0.0, 1.0
	for _, b := range bars {
		if !math.IsNaN(b.Value) {
			lo, hi = math.Min(lo, b.Value), math.Max(hi, b.Value)
		}
	}
	scale := barW / (hi - lo)
	x0 := labelW + (0-lo)*scale
	h := top + rowH*len(bars) + 24
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", labelW+barW+70, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="8" y="18" font-size="13" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, b := range bars {
		y := top + i*rowH
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-6, y+12, html.EscapeString(b.Label))
		if math.IsNaN(b.Value) {
			continue
		}
		x, w := x0, b.Value*scale
		color := "#4878a8"
		if w < 0 {
			x, w, color = x0+w, -w, "#68a868"
		}
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x, y+2, w, rowH-4, color)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d">%+.1f%%</text>`+"\n", math.Max(x0, x+w)+4, y+12, b.Value)
	}
	fmt.Fprintf(&sb, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x0, top-4, x0, top+rowH*len(bars))
	fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">0 (the baseline, same run)</text>`+"\n", x0, h-6)
	sb.WriteString("</svg>\n")
	return sb.String()
}

// Series is one line of LineChart.
type Series struct {
	Name string
	X, Y []float64
}

// LineChart draws series against a logarithmic x axis: a standalone SVG.
func LineChart(title, xlabel, ylabel string, series []Series) string {
	const W, H, L, R, T, B = 640, 360, 60, 170, 34, 40
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), 0.0, 1.0
	for _, s := range series {
		for i := range s.X {
			if math.IsNaN(s.Y[i]) {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	if math.IsInf(xmin, 0) || xmin <= 0 || xmax <= xmin {
		xmin, xmax = 1, 10
	}
	ymax *= 1.1
	px := func(x float64) float64 {
		return L + (math.Log10(x)-math.Log10(xmin))/(math.Log10(xmax)-math.Log10(xmin))*(W-L-R)
	}
	py := func(y float64) float64 { return T + (ymax-y)/(ymax-ymin)*(H-T-B) }
	colors := []string{"#4878a8", "#d0703c", "#68a868", "#a85878", "#888888", "#c8a838"}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", W, H)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="8" y="18" font-size="13" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&sb, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`+"\n", L, py(0), W-R, py(0))
	fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", L, T, L, H-B)
	for d := math.Ceil(math.Log10(xmin)); d <= math.Log10(xmax)+1e-9; d++ {
		x := px(math.Pow(10, d))
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			x, T, x, H-B, x, H-B+14, fmt.Sprintf("%g", math.Pow(10, d)))
	}
	for i := 0; i <= 4; i++ {
		y := ymin + (ymax-ymin)*float64(i)/4
		fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="end">%.1f</text>`+"\n", L-4, py(y)+4, y)
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (W-R+L)/2, H-6, html.EscapeString(xlabel))
	fmt.Fprintf(&sb, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>`+"\n", (H)/2, H/2, html.EscapeString(ylabel))
	for k, s := range series {
		c := colors[k%len(colors)]
		var pts []string
		for i := range s.X {
			if !math.IsNaN(s.Y[i]) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[i]), py(s.Y[i])))
				fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(s.X[i]), py(s.Y[i]), c)
			}
		}
		fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), c)
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", W-R+10, T+k*16, c, W-R+24, T+k*16+9, html.EscapeString(s.Name))
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}
