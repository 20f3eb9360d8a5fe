package assaytest

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MetricsURL finds the "assay: metrics at URL" line among lines.
func MetricsURL(lines []string) string {
	for _, l := range lines {
		if u, ok := strings.CutPrefix(l, "assay: metrics at "); ok {
			return u
		}
	}
	return ""
}

// Scrape GETs a Prometheus text exposition and returns every sample by its
// series as printed, e.g. `assay_events_total{action="blocked",path="socket"}`.
func Scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s %q: %.500s", url, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			t.Fatalf("scrape %s: line %q", url, l)
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: line %q: %v", url, l, err)
		}
		out[l[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return out
}

// ScrapeUntilSeries scrapes until every series in want has its value (at
// most timeout), checks the last scrape against want with CheckSeries and
// returns it. Waiting for all of them, not one: an event's counters are
// separate collectors, incremented one after the other and gathered
// concurrently, so a scrape may see the event counted and its rule hit not
// yet.
func ScrapeUntilSeries(t testing.TB, url string, want map[string]float64, timeout time.Duration) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := Scrape(t, url)
		if matches(m, want) || time.Now().After(deadline) {
			CheckSeries(t, m, want)
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func matches(got, want map[string]float64) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// CheckSeries compares samples with want, series by series, exactly.
func CheckSeries(t testing.TB, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("no series %s", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}
