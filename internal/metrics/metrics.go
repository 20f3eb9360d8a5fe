// Package metrics exports assay's counters in the Prometheus text format
// (`--metrics ADDR` of `assay run` and `assay monitor`), with
// github.com/prometheus/client_golang:
//
//	assay_events_total{path,action}          events written, by path (file, socket, tracepoint, dns, mcp) and action (blocked, audit, observed)
//	assay_rule_hits_total{rule_id}           blocked or audited events, by the rule that matched
//	assay_ringbuf_events_total{path,outcome} the kernel's ring-buffer accounting (path tracepoint, lsm, socket; outcome emitted, dropped, suppressed)
//	assay_policy_reloads_total{result}       live reloads, ok or refused
//	assay_policy_info{version,mode,generation} 1, labelled with the policy in force (generation: 1 for the policy assay started with, +1 per reload)
//	assay_mcp_tool_calls_total{tool,outcome} tools/call through `assay run --mcp`: ok, error, blocked, cancelled
//
// plus the Go and process collectors (go_*, process_*).
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/assaymcp/assay/internal/events"
)

// MaxTools bounds the tool label's values: tool names come from the
// client, and each new one is a new series. Past it, calls count under
// tool="_other".
const MaxTools = 1000

// Ring is the kernel's ring-buffer accounting per path.
type Ring struct {
	Emitted, Dropped, Suppressed [3]uint64 // tracepoint, lsm, socket
}

var ringPaths = [3]string{"tracepoint", "lsm", "socket"}

// Metrics is one assay process's metrics. Its methods are safe for
// concurrent use and cheap enough for the event path.
type Metrics struct {
	reg       *prometheus.Registry
	events    *prometheus.CounterVec
	ruleHits  *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	info      *prometheus.GaugeVec
	toolCalls *prometheus.CounterVec

	mu         sync.Mutex
	ring       func() (Ring, error)
	lastRing   Ring
	generation int
	tools      map[string]bool
}

// New makes the metrics and registers them with the Go and process
// collectors on a registry of their own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "assay_events_total", Help: "Events written, by path (file, socket, tracepoint, dns, mcp) and action (blocked, audit, observed).",
		}, []string{"path", "action"}),
		ruleHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "assay_rule_hits_total", Help: "Blocked or audited events, by the id of the policy rule that matched.",
		}, []string{"rule_id"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "assay_policy_reloads_total", Help: "Live policy reloads, by result (ok, refused).",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "assay_policy_info", Help: "1, labelled with the policy in force: its format version, mode and generation (1 at start, +1 per reload).",
		}, []string{"version", "mode", "generation"}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "assay_mcp_tool_calls_total", Help: "tools/call requests relayed by assay run --mcp, by tool and outcome (ok, error, blocked, cancelled).",
		}, []string{"tool", "outcome"}),
		tools: map[string]bool{},
	}
	m.reg.MustRegister(m.events, m.ruleHits, m.reloads, m.info, m.toolCalls, (*ringCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"ok", "refused"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// Registry is where the metrics are registered (tests).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Path is the events_total path of an event.
func Path(e events.Event) string {
	switch e.Kind {
	case events.KindConnect, events.KindSendmsg:
		return "socket"
	case events.KindFile:
		return "file"
	case events.KindTraceOpen, events.KindTraceExec, events.KindTraceUnix, events.KindTraceFileOp:
		return "tracepoint"
	case events.KindTool:
		return "mcp"
	}
	if e.Kind.String() == "dns" {
		return "dns"
	}
	return e.Kind.String()
}

// Event counts one event written.
func (m *Metrics) Event(e events.Event) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(Path(e), e.Verdict.String()).Inc()
	if e.Verdict != events.VerdictObserved && e.RuleID != 0 {
		m.ruleHits.WithLabelValues(strconv.FormatUint(uint64(e.RuleID), 10)).Inc()
	}
}

// ToolCall counts one tools/call and its outcome.
func (m *Metrics) ToolCall(tool, outcome string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if !m.tools[tool] {
		if len(m.tools) >= MaxTools {
			tool = "_other"
		} else {
			m.tools[tool] = true
		}
	}
	m.mu.Unlock()
	m.toolCalls.WithLabelValues(tool, outcome).Inc()
}

// Policy records the policy in force: at start, and after each successful
// reload (Reload).
func (m *Metrics) Policy(version int, mode string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.generation++
	m.info.Reset()
	m.info.WithLabelValues(strconv.Itoa(version), mode, strconv.Itoa(m.generation)).Set(1)
}

// Reload counts a reload: ok, or refused (the previous policy stays).
func (m *Metrics) Reload(ok bool) {
	if m == nil {
		return
	}
	result := "refused"
	if ok {
		result = "ok"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// SetRing gives the source of the ring-buffer accounting, read at each
// scrape; after it fails (the session stopped) the last values stay.
func (m *Metrics) SetRing(f func() (Ring, error)) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.ring = f
	m.mu.Unlock()
}

type ringCollector Metrics

var ringDesc = prometheus.NewDesc("assay_ringbuf_events_total",
	"The kernel's ring-buffer accounting: records emitted, dropped (the buffer was full) and suppressed (over the per-cgroup rate limit), by path (tracepoint, lsm, socket).",
	[]string{"path", "outcome"}, nil)

func (c *ringCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ringDesc }

func (c *ringCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.ring != nil {
		if r, err := c.ring(); err == nil {
			c.lastRing = r
		}
	}
	r := c.lastRing
	c.mu.Unlock()
	for i, p := range ringPaths {
		for _, o := range []struct {
			name string
			v    uint64
		}{{"emitted", r.Emitted[i]}, {"dropped", r.Dropped[i]}, {"suppressed", r.Suppressed[i]}} {
			ch <- prometheus.MustNewConstMetric(ringDesc, prometheus.CounterValue, float64(o.v), p, o.name)
		}
	}
}

// ListenAddr turns --metrics ADDR into the address to listen on: a bare
// port ("9464") or one without a host (":9464") means the loopback address
// 127.0.0.1; a host given explicitly (0.0.0.0, [::], a name) is used as is.
func ListenAddr(addr string) (string, error) {
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", addr), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--metrics %q: want [HOST]:PORT or PORT (%v)", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("--metrics %q: the port must be a number 0-65535", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Server serves /metrics.
type Server struct {
	URL  string // http://HOST:PORT/metrics, with the port bound
	srv  *http.Server
	done chan struct{}
}

// Serve listens on --metrics ADDR (see ListenAddr) and serves the metrics
// at /metrics until Close.
func (m *Metrics) Serve(addr string) (*Server, error) {
	la, err := ListenAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", la)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	s := &Server{
		URL:  "http://" + ln.Addr().String() + "/metrics",
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed: nothing more to serve
		}
	}()
	return s, nil
}

// Close stops serving.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	err := s.srv.Close()
	<-s.done
	return err
}
