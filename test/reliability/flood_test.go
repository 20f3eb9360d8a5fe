package reliability_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/assaytest"
	"golang.org/x/sys/unix"
)

// Flood parameters: floodProbes processes in one cgroup make floodEach
// denied connects each, as fast as they can.
const (
	floodProbes = 4
	floodEach   = 250000
	// floodRSSBound bounds the monitor's resident memory during the flood
	// (its ring buffer alone maps 16 MiB).
	floodRSSBound = 256 << 20
	// floodLatencyBound bounds how long the event of a denial in another
	// cgroup may take to be printed during the flood.
	floodLatencyBound = 5 * time.Second
	// floodRate is the monitor's --rate-limit during the flood. Not the
	// default (50,000 events/s per cgroup): at that rate a reader starved
	// of CPU (seen at load 23 on 2 cores) drains fewer lines than the
	// flood's cgroup may emit, the ring fills, and the other cgroup's
	// event is dropped (counted and aggregated, but not printed in time).
	// The per-cgroup budget keeps the other cgroup's events flowing only
	// while the reader keeps up with it; a tenth of the default keeps the
	// test about the budget, not about the machine's load.
	floodRate = 5000
)

// TestFlood: a million denied connects from four processes in parallel,
// in one cgroup, plus a fifth process that keeps connecting until the
// check below is done (so that the flood surely lasts that long), against
// a monitor with a rate limit of floodRate events per second per cgroup.
// While it lasts, the monitor stays responsive: a denial in a second scope cgroup, which has its own budget,
// is printed within seconds; its resident memory stays bounded (sampled
// from /proc every 50 ms). Afterwards the accounting is exact: emitted +
// dropped + suppressed equals the denials, emitted equals the event lines
// printed, and the rate limit did suppress (the text summary says how
// many); in each second of CLOCK_MONOTONIC the flood touched its cgroup
// emitted at most the limit (exact, no slack); the aggregate lines count
// every suppressed event, and the summary's per-rule line agrees.
func TestFlood(t *testing.T) {
	assaytest.Privileged(t)
	flood := assaytest.NewCgroup(t)
	other := assaytest.NewCgroup(t)
	_, addr := listen(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	pol := writePolicy(t, "version: 1\nnetwork:\n  deny_ports: [{port: %s, id: 70}]\n", port)
	m := assaytest.StartMonitor(t, "monitor", "--policy", pol, "--cgroup", flood.Path, "--cgroup", other.Path, "--rate-limit", strconv.Itoa(floodRate))

	var peak atomic.Uint64
	var samples atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := vmRSS(m.Pid()); rss > peak.Load() {
				peak.Store(rss)
			}
			samples.Add(1)
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	rssBefore := vmRSS(m.Pid())

	start := time.Now()
	// The rate limit's windows are the seconds of CLOCK_MONOTONIC; every
	// flood event falls in one from firstSecond to the last second read
	// below.
	firstSecond := monotonicSecond()
	stop := filepath.Join(t.TempDir(), "stop")
	until := assaytest.StartProbe(t, &flood, "connect-until", stop, "tcp4", addr)
	var probes []*assaytest.RunningProbe
	for range floodProbes {
		probes = append(probes, assaytest.StartProbe(t, &flood, "connect-loop", fmt.Sprint(floodEach), "tcp4", addr))
	}
	waitFile(t, stop+".ready", 10*time.Second)
	// Once the flood is under way (its events are coming), a denial in the
	// other cgroup.
	m.WaitEvents(1000, eventTimeout)
	sent := time.Now()
	c := assaytest.Probe(t, &other, "connect", "tcp4", addr)
	requireEPERM(t, "in the other cgroup during the flood", c)
	prefix := fmt.Sprintf("[PID %d] ", c.PID)
	var latency time.Duration
	for {
		if hasPrefixLine(m.Stdout(), prefix) {
			latency = time.Since(sent)
			break
		}
		if time.Since(sent) > floodLatencyBound {
			t.Errorf("the other cgroup's event not printed within %v during the flood", floodLatencyBound)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u := until.Wait()
	if u.Other != 0 || u.N != u.Attempts {
		t.Errorf("flood probe %d: %d attempts, %d EPERM, %d other (last %q)", u.PID, u.Attempts, u.N, u.Other, u.Err)
	}
	attempts, denied := u.Attempts, u.N
	for _, p := range probes {
		r := p.Wait()
		attempts += r.Attempts
		denied += r.N
		if r.Other != 0 || r.N != floodEach {
			t.Errorf("flood probe %d: %d attempts, %d EPERM, %d other (last %q)", r.PID, r.Attempts, r.N, r.Other, r.Err)
		}
	}
	elapsed := time.Since(start)
	lastSecond := monotonicSecond()
	close(stopSampling)
	<-sampled
	res := m.Stop()

	s := res.Summary.Socket
	t.Logf("flood: %d connects, %d denied, from %d processes in %.2fs (%.0f/s); the other cgroup's event printed %v after its probe started",
		attempts, denied, floodProbes+1, elapsed.Seconds(), float64(denied)/elapsed.Seconds(), latency.Round(time.Millisecond))
	t.Logf("summary socket: emitted=%d dropped=%d suppressed=%d (%.0f events/s emitted); %d event lines",
		s.Emitted, s.Dropped, s.Suppressed, float64(s.Emitted)/elapsed.Seconds(), len(res.EventLines))
	t.Logf("monitor VmRSS: %.1f MiB before, peak %.1f MiB during the flood (%d samples)",
		float64(rssBefore)/(1<<20), float64(peak.Load())/(1<<20), samples.Load())
	if res.ExitCode != 0 || !res.HasSummary {
		t.Fatalf("monitor: exit status %d, summary %v; stderr:\n%s", res.ExitCode, res.HasSummary, res.StderrText())
	}
	total := uint64(denied) + 1 // the other cgroup's denial
	if s.Emitted+s.Dropped+s.Suppressed != total {
		t.Errorf("emitted %d + dropped %d + suppressed %d = %d, want the %d denials", s.Emitted, s.Dropped, s.Suppressed, s.Emitted+s.Dropped+s.Suppressed, total)
	}
	if s.Emitted != uint64(len(res.EventLines)) {
		t.Errorf("emitted %d, but %d event lines printed", s.Emitted, len(res.EventLines))
	}
	if s.Suppressed == 0 || !hasLine(res.Stderr, fmt.Sprintf("Socket ringbuf: emitted=%d dropped=%d suppressed=%d", s.Emitted, s.Dropped, s.Suppressed)) {
		t.Errorf("no suppression in the text summary:\n%s", res.StderrText())
	}
	// The rate limit is exact: the flood's cgroup emitted at most the
	// limit in each second of CLOCK_MONOTONIC that the flood touched.
	floodEmitted := s.Emitted - uint64(len(eventsPrefixed(res.EventLines, prefix)))
	windows := lastSecond - firstSecond + 1
	if limit := uint64(floodRate) * windows; floodEmitted > limit {
		t.Errorf("the flood's cgroup emitted %d events in %d seconds of CLOCK_MONOTONIC (%v): more than the %d/s rate limit allows (%d)",
			floodEmitted, windows, elapsed, floodRate, limit)
	}
	// Nothing the rate limit suppressed is hidden: the aggregate lines
	// count every suppressed or dropped event, and the summary says so per
	// rule.
	var aggregated uint64
	for _, l := range res.AggregateLines {
		m := aggCountRE.FindStringSubmatch(l)
		if m == nil || !strings.Contains(l, " rule_id=70 ") {
			t.Errorf("unexpected aggregate line %q", l)
			continue
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		aggregated += n
	}
	rules := res.Summary.Rules
	if aggregated != s.Suppressed+s.Dropped || len(rules) != 1 || rules[0].RuleID != 70 || rules[0].Suppressed+rules[0].Dropped != aggregated {
		t.Errorf("aggregate lines count %d events, summary rules %+v; want suppressed %d + dropped %d", aggregated, rules, s.Suppressed, s.Dropped)
	}
	if peak.Load() > floodRSSBound {
		t.Errorf("monitor VmRSS peaked at %d MiB, more than %d MiB", peak.Load()>>20, floodRSSBound>>20)
	}
	if n := len(eventsPrefixed(res.EventLines, prefix)); n != 1 {
		t.Errorf("%d events of the other cgroup's probe, want 1", n)
	}
}

var aggCountRE = regexp.MustCompile(` count=([0-9]+) `)

func monotonicSecond() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return uint64(ts.Sec)
}

func hasPrefixLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func eventsPrefixed(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
