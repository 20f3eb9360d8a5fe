package assaytest

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/assaymcp/assay/internal/events"
)

// Timeouts for the assay processes tests drive. They are hang guards, not
// performance bounds: a process that works is never near them, a hung one
// fails the test with its output. They are measured in wall-clock time, so
// they are sized for a busy machine (2 cores at a load average of 25 stretch
// a second of work to 15-20 s) and for the vmtest guest (loading and
// verifying the BPF LSM programs under TCG on a busy host took over 30 s),
// not for an idle one. They scale with $ASSAY_TIMEOUT_SCALE (see [Scaled]).
var (
	ReadyTimeout = Scaled(2 * time.Minute) // StartMonitor: until the readiness line
	StopTimeout  = Scaled(2 * time.Minute) // Stop, Wait, Run: until the process exits
)

// Scaled returns d times $ASSAY_TIMEOUT_SCALE (a positive integer; 1 when
// unset): slow machines, such as an emulated arm64 guest under TCG (the
// vmtest sets it), wait longer for the same conditions.
func Scaled(d time.Duration) time.Duration {
	if n, err := strconv.Atoi(os.Getenv("ASSAY_TIMEOUT_SCALE")); err == nil && n > 1 {
		return d * time.Duration(n)
	}
	return d
}

// Readiness line prefixes `assay monitor` prints on stderr once every
// program is attached (`assay monitor --attach NAME`: once it streams the
// pinned instance's events).
var readyPrefixes = []string{"assay: enforcing", "assay: auditing", "assay: attached to"}

// Result is what an assay process printed and how it ended.
type Result struct {
	Stdout   []string // lines, without newlines
	Stderr   []string
	ExitCode int // -1 when killed by a signal

	// EventLines are the stdout lines that are events (text or JSON),
	// in order; Events the JSON ones decoded (--output json).
	EventLines []string
	Events     []events.JSONEvent
	// Tokens are the distinct tokens assay's lines carried (one per run;
	// see events.Marker), removed from the lines above; Unmarked counts
	// lines without one.
	Tokens   []string
	Unmarked int

	// AggregateLines are the stdout lines that are aggregates (text or
	// JSON) of events not emitted one by one; Aggregates the JSON ones
	// decoded.
	AggregateLines []string
	Aggregates     []events.JSONAggregate

	// Summary is the exit summary: from the {"type":"summary"} stdout
	// line with --output json, else from the three "... ringbuf:" stderr
	// lines. HasSummary reports whether one was found. Received and
	// Malformed are only known with JSON output (Malformed also from the
	// text line when printed).
	Summary    events.Summary
	HasSummary bool
	// Pressure: the JSON summary's ring_buffer_pressure, or the text
	// summary's warning line (events.PressureWarning) was printed.
	Pressure bool
}

// StderrText is the whole stderr, for messages.
func (r Result) StderrText() string { return strings.Join(r.Stderr, "\n") }

// Monitor is a running `assay monitor`.
type Monitor struct {
	t    testing.TB
	cmd  *exec.Cmd
	args []string

	mu       sync.Mutex
	stdout   []string // without assay's tokens (see Unmark) and timestamps
	stderr   []string
	untimed  []string // event lines without a timestamp (a bug)
	tokens   []string
	unmarked int
	nEvents  int
	changed  chan struct{} // closed (and replaced) whenever a line arrives

	ready  chan struct{} // closed on the readiness line
	exited chan struct{} // closed when the process has exited and its output is read

	stopOnce sync.Once
	result   Result
}

// StartMonitor runs the assay binary with exactly args (e.g. "monitor",
// "--policy", f, "--cgroup", p) and returns once it printed its readiness
// line on stderr. It fails the test, with the monitor's stderr, if the
// monitor exits first or is not ready within ReadyTimeout. A monitor the
// test does not Stop is killed when the test ends.
func StartMonitor(t testing.TB, args ...string) *Monitor {
	t.Helper()
	m := &Monitor{
		t:       t,
		args:    args,
		changed: make(chan struct{}),
		ready:   make(chan struct{}),
		exited:  make(chan struct{}),
	}
	m.cmd = exec.Command(Binary(t), args...)
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := m.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start assay %q: %v", args, err)
	}
	t.Cleanup(func() {
		select {
		case <-m.exited:
			return
		default:
		}
		t.Logf("assay %q still running at the end of the test: killing it", args)
		_ = m.cmd.Process.Kill()
		<-m.exited
	})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.read(stdout, &m.stdout) }()
	go func() { defer wg.Done(); m.read(stderr, &m.stderr) }()
	go func() {
		wg.Wait()
		_ = m.cmd.Wait()
		close(m.exited)
		m.notify()
	}()

	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case <-m.ready:
		return m
	case <-m.exited:
		t.Fatalf("assay %q exited (status %d) before it was ready; stderr:\n%s", args, m.cmd.ProcessState.ExitCode(), m.stderrText())
	case <-timer.C:
		_ = m.cmd.Process.Kill()
		<-m.exited
		t.Fatalf("assay %q not ready after %v; stderr:\n%s", args, ReadyTimeout, m.stderrText())
	}
	return nil
}

func (m *Monitor) read(r io.Reader, into *[]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, tok := Unmark(sc.Text())
		line, untimed := untimeLine(line)
		m.mu.Lock()
		m.tokens = addToken(m.tokens, tok)
		if tok == "" {
			m.unmarked++
		}
		if untimed {
			m.untimed = append(m.untimed, line)
		}
		*into = append(*into, line)
		if into == &m.stdout && isEventLine(line) {
			m.nEvents++
		}
		if into == &m.stderr && isReadyLine(line) {
			select {
			case <-m.ready:
			default:
				close(m.ready)
			}
		}
		m.mu.Unlock()
		m.notify()
	}
	// Keep draining after a scanner error (a huge line) so that the
	// process never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

func (m *Monitor) notify() {
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

func isReadyLine(line string) bool {
	for _, p := range readyPrefixes {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// isEventLine reports whether a stdout line is an event: a text operator
// line, or a JSON object other than the summary.
func isEventLine(line string) bool {
	if strings.HasPrefix(line, "[PID ") {
		return true
	}
	if !strings.HasPrefix(line, "{") {
		return false
	}
	var head struct {
		Type string `json:"type"`
	}
	return json.Unmarshal([]byte(line), &head) == nil && head.Type == "event"
}

func (m *Monitor) stderrText() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.stderr, "\n")
}

// Pid is the monitor's process id.
func (m *Monitor) Pid() int { return m.cmd.Process.Pid }

// Signal sends sig to the monitor.
func (m *Monitor) Signal(sig os.Signal) {
	m.t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		m.t.Fatalf("signal %v to assay: %v", sig, err)
	}
}

// Stdout returns the stdout lines so far.
func (m *Monitor) Stdout() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.stdout...)
}

// WaitEvents blocks until the monitor has printed at least n event lines
// (text or JSON) and returns the event lines so far. It fails the test
// after timeout, or if the monitor exits with fewer.
func (m *Monitor) WaitEvents(n int, timeout time.Duration) []string {
	m.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		got, changed := m.nEvents, m.changed
		m.mu.Unlock()
		if got >= n {
			return m.eventLines()
		}
		select {
		case <-changed:
		case <-m.exited:
			m.mu.Lock()
			got = m.nEvents
			m.mu.Unlock()
			if got >= n {
				return m.eventLines()
			}
			m.t.Fatalf("assay exited after %d of %d events; stdout:\n%s\nstderr:\n%s", got, n, strings.Join(m.Stdout(), "\n"), m.stderrText())
		case <-deadline.C:
			m.t.Fatalf("%d of %d events after %v; stdout:\n%s\nstderr:\n%s", got, n, timeout, strings.Join(m.Stdout(), "\n"), m.stderrText())
		}
	}
}

// Stderr returns the stderr lines so far.
func (m *Monitor) Stderr() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.stderr...)
}

// WaitStderr blocks until the monitor has printed at least n stderr lines
// containing substr and returns them. It fails the test after timeout, or
// if the monitor exits with fewer.
func (m *Monitor) WaitStderr(substr string, n int, timeout time.Duration) []string {
	m.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		var got []string
		for _, l := range m.stderr {
			if strings.Contains(l, substr) {
				got = append(got, l)
			}
		}
		changed := m.changed
		m.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-m.exited:
			if have := m.countStderr(substr); have < n {
				m.t.Fatalf("assay exited after %d of %d stderr lines with %q; stderr:\n%s", have, n, substr, m.stderrText())
			}
		case <-deadline.C:
			m.t.Fatalf("%d of %d stderr lines with %q after %v; stderr:\n%s", len(got), n, substr, timeout, m.stderrText())
		}
	}
}

func (m *Monitor) countStderr(substr string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, l := range m.stderr {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func (m *Monitor) eventLines() []string {
	var out []string
	for _, l := range m.Stdout() {
		if isEventLine(l) {
			out = append(out, l)
		}
	}
	return out
}

// Stop sends SIGINT, waits for the monitor to exit (killing it and failing
// the test after StopTimeout) and returns what it printed. Later calls
// return the same Result.
func (m *Monitor) Stop() Result {
	m.t.Helper()
	m.stopOnce.Do(func() {
		select {
		case <-m.exited:
		default:
			// SIGCONT first: a test may have stopped the monitor.
			_ = m.cmd.Process.Signal(syscall.SIGCONT)
			_ = m.cmd.Process.Signal(os.Interrupt)
		}
		m.result = m.wait(StopTimeout)
	})
	return m.result
}

// Wait waits, without signalling, for the monitor to exit by itself (e.g.
// with --duration) and returns what it printed.
func (m *Monitor) Wait(timeout time.Duration) Result {
	m.t.Helper()
	m.stopOnce.Do(func() { m.result = m.wait(timeout) })
	return m.result
}

func (m *Monitor) wait(timeout time.Duration) Result {
	m.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-m.exited:
	case <-timer.C:
		_ = m.cmd.Process.Kill()
		<-m.exited
		m.t.Errorf("assay %q did not exit within %v: killed", m.args, timeout)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.untimed) > 0 {
		m.t.Errorf("%d event lines without a timestamp, e.g. %q", len(m.untimed), m.untimed[0])
	}
	r := parseResult(m.t, m.stdout, m.stderr, m.cmd.ProcessState.ExitCode())
	r.Tokens, r.Unmarked = m.tokens, m.unmarked
	return r
}
