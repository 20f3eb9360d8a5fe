package events

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Format is an output format.
type Format int

// Output formats.
const (
	Text Format = iota
	JSON
)

// ParseFormat parses the --output flag.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return Text, nil
	case "json":
		return JSON, nil
	}
	return Text, fmt.Errorf("unknown output format %q: use text or json", s)
}

// RulePath returns the policy path of a file rule, "" when unknown.
type RulePath func(id uint32) string

// Renderer writes events in one format. It is not safe for concurrent use.
type Renderer struct {
	w        *bufio.Writer
	format   Format
	rulePath RulePath
	// wall(mono) = wallAtMono + (mono - monoAtWall): kernel timestamps
	// (bpf_ktime_get_ns, CLOCK_MONOTONIC) to wall-clock time; see Anchor.
	wallAtMono time.Time
	monoAtWall uint64

	// mcp, when set, gives the MCP context of an event from its kernel
	// time (`assay run --mcp`).
	mcp func(mono uint64) []MCPCall
	// observe, when set, sees every event written (metrics).
	observe func(Event)

	Received  uint64 // records decoded and written
	Malformed uint64 // records that could not be decoded
	buf       []byte
}

// NewRenderer writes to w. nowMono is CLOCK_MONOTONIC now, in ns, used to
// turn kernel timestamps into wall-clock times.
func NewRenderer(w io.Writer, f Format, rulePath RulePath, nowMono uint64) *Renderer {
	if rulePath == nil {
		rulePath = func(uint32) string { return "" }
	}
	return &Renderer{w: bufio.NewWriterSize(w, 64<<10), format: f, rulePath: rulePath, wallAtMono: time.Now(), monoAtWall: nowMono}
}

// Anchor resets the pairing of wall-clock time and CLOCK_MONOTONIC used to
// date events (both read now, by the caller), so that a wall clock stepped
// after the renderer was made (NTP, an operator) is followed.
func (r *Renderer) Anchor(wall time.Time, mono uint64) {
	r.wallAtMono, r.monoAtWall = wall, mono
}

// SetMCP makes every event carry the MCP context f gives for its kernel
// time (see Event.MCP); events that have one already keep it.
func (r *Renderer) SetMCP(f func(mono uint64) []MCPCall) { r.mcp = f }

// SetObserver makes f see every event the renderer writes (metrics).
func (r *Renderer) SetObserver(f func(Event)) { r.observe = f }

// Time is the wall-clock time of a kernel timestamp (CLOCK_MONOTONIC ns).
func (r *Renderer) Time(mono uint64) time.Time { return r.wall(mono).UTC() }

// Record decodes and writes one raw record. A malformed record is counted
// and skipped; the error returned is a write error.
func (r *Renderer) Record(raw []byte) error {
	e, err := Decode(raw)
	if err != nil {
		r.Malformed++
		return nil
	}
	r.Received++
	return r.Event(e)
}

// Event writes one event.
func (r *Renderer) Event(e Event) error {
	if r.mcp != nil && e.MCP == nil && e.Kind != KindTool {
		e.MCP = r.mcp(e.MonoNS)
	}
	if r.observe != nil {
		r.observe(e)
	}
	r.buf = r.buf[:0]
	if r.format == JSON {
		r.buf = r.appendJSON(r.buf, e)
	} else {
		r.buf = r.wall(e.MonoNS).UTC().AppendFormat(r.buf, TextTime)
		r.buf = append(r.buf, ' ')
		r.buf = AppendText(r.buf, e)
	}
	r.buf = append(r.buf, '\n')
	_, err := r.w.Write(r.buf)
	return err
}

// Flush writes out buffered lines.
func (r *Renderer) Flush() error { return r.w.Flush() }

func (r *Renderer) wall(mono uint64) time.Time {
	return r.wallAtMono.Add(time.Duration(int64(mono) - int64(r.monoAtWall)))
}

// Label is the operator line's action word, e.g. "BLOCKED CONNECT".
func Label(e Event) string {
	switch e.Kind {
	case KindTraceOpen:
		return "OPEN"
	case KindTraceExec:
		return "EXEC"
	case KindTraceUnix:
		return "UNIX CONNECT"
	case KindTraceFileOp:
		if e.Target {
			return strings.ToUpper(e.Op.String()) + " TO"
		}
		return strings.ToUpper(e.Op.String())
	}
	action := "BLOCKED"
	if e.Verdict == VerdictAudit {
		action = "AUDIT"
	}
	return action + " " + strings.ToUpper(e.Kind.String())
}

// AppendText appends the operator line (without newline and without the
// timestamp the renderer writes before it, "2026-11-29T17:20:42.123456Z "):
//
//	[PID 4242] 🛡️ BLOCKED CONNECT: dst=10.0.0.5:22 proto=tcp cgroup=4026532987 rule_id=40 family=inet comm=curl tid=4242
//	[PID 4242] 🛡️ BLOCKED SENDMSG: dst=[::ffff:10.0.0.5]:53 proto=udp cgroup=4026532987 rule_id=41 family=inet6 mapped_ipv4=true comm=dig tid=4242
//	[PID 4242] 🛡️ BLOCKED FILE: dev=2050 ino=918273 cgroup=4026532987 rule_id=7 op=open comm=cat tid=4242
//	[PID 4242] OPEN: path=/etc/hosts flags=0x0 cgroup=4026532987 result=ok comm=cat tid=4242 observation=trace
//
// Values that could forge a line or a field (paths, comm) are quoted.
func AppendText(b []byte, e Event) []byte {
	b = append(b, "[PID "...)
	b = strconv.AppendUint(b, uint64(e.PID), 10)
	b = append(b, "] "...)
	switch e.Verdict {
	case VerdictBlocked:
		b = append(b, "🛡️ "...)
	case VerdictAudit:
		b = append(b, "🔎 "...)
	}
	b = append(b, Label(e)...)
	b = append(b, ": "...)
	switch e.Kind {
	case KindConnect, KindSendmsg:
		b = append(b, "dst="...)
		b = appendHostPort(b, e)
		b = append(b, " proto="...)
		b = append(b, protoName(e.Protocol)...)
		b = appendCommon(b, e)
		if e.Family == AFInet6 {
			b = append(b, " family=inet6"...)
		} else {
			b = append(b, " family=inet"...)
		}
		if e.Mapped {
			b = append(b, " mapped_ipv4=true"...)
		}
		if e.Unspec != UnspecNone {
			b = append(b, " requested="...)
			b = append(b, e.Unspec.String()...)
		}
	case KindFile:
		b = append(b, "dev="...)
		b = strconv.AppendUint(b, uint64(e.Dev), 10)
		b = append(b, " ino="...)
		b = strconv.AppendUint(b, e.Ino, 10)
		b = appendCommon(b, e)
		b = append(b, " op="...)
		b = append(b, e.Op.String()...)
		if e.Path != "" { // judged in user space from a traced open (policy v2 under Landlock)
			b = append(b, " path="...)
			b = appendValue(b, e.Path)
		}
	case KindTool:
		b = appendToolText(b, e)
		return appendMCPText(b, e.MCP)
	case KindDNS:
		b = append(b, "query="...)
		b = appendValue(b, e.Name)
		b = append(b, " qtype="...)
		b = append(b, QTypeName(e.QType)...)
		b = appendCommon(b, e)
		return appendMCPText(b, e.MCP)
	case KindTraceOpen, KindTraceExec, KindTraceUnix, KindTraceFileOp:
		b = append(b, "path="...)
		b = appendValue(b, e.Path)
		if e.Kind == KindTraceFileOp {
			b = append(b, " op="...)
			b = append(b, e.Op.String()...)
			if e.Target {
				b = append(b, " target=true"...)
			}
		}
		if e.Kind == KindTraceOpen {
			b = append(b, " flags=0x"...)
			b = strconv.AppendUint(b, uint64(e.Flags), 16)
		}
		b = append(b, " cgroup="...)
		b = strconv.AppendUint(b, e.CgroupID, 10)
		if e.Kind == KindTraceOpen {
			b = append(b, " result="...)
			b = append(b, openResult(e.Ret)...)
		}
		if e.Source != SourceFile {
			b = append(b, " path_source="...)
			b = append(b, e.Source.String()...)
		}
	}
	b = append(b, " comm="...)
	b = appendValue(b, e.Comm)
	b = append(b, " tid="...)
	b = strconv.AppendUint(b, uint64(e.TID), 10)
	if e.Verdict == VerdictObserved {
		b = append(b, " observation=trace"...)
	}
	return appendMCPText(b, e.MCP)
}

func appendCommon(b []byte, e Event) []byte {
	b = append(b, " cgroup="...)
	b = strconv.AppendUint(b, e.CgroupID, 10)
	b = append(b, " rule_id="...)
	b = strconv.AppendUint(b, uint64(e.RuleID), 10)
	return b
}

// appendValue appends s bare when it is plainly safe, else Go-quoted, so a
// path or comm can never end a line or fake a field.
func appendValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=' {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}

func appendHostPort(b []byte, e Event) []byte {
	if e.Family == AFInet6 {
		b = append(b, '[')
		b = e.Addr.AppendTo(b)
		b = append(b, ']', ':')
	} else {
		b = e.Addr.AppendTo(b)
		b = append(b, ':')
	}
	return strconv.AppendUint(b, uint64(e.Port), 10)
}

// QTypeName names a DNS query type: A, AAAA, CNAME, ... or TYPEn.
func QTypeName(t uint16) string {
	switch t {
	case 1:
		return "A"
	case 2:
		return "NS"
	case 5:
		return "CNAME"
	case 6:
		return "SOA"
	case 12:
		return "PTR"
	case 15:
		return "MX"
	case 16:
		return "TXT"
	case 28:
		return "AAAA"
	case 33:
		return "SRV"
	case 64:
		return "SVCB"
	case 65:
		return "HTTPS"
	case 255:
		return "ANY"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 0:
		return "ip"
	}
	return strconv.Itoa(int(p))
}

// Time formats: RFC 3339 in UTC with a fixed number of fractional digits,
// microseconds in text lines, nanoseconds in JSON.
const (
	TextTime = "2006-01-02T15:04:05.000000Z07:00"
	JSONTime = "2006-01-02T15:04:05.000000000Z07:00"
)

// SchemaVersion is the "schema" field of every JSON line assay writes: the
// version of docs/events.schema.json that describes it.
const SchemaVersion = 1

// JSONEvent is the --output json form of an event; see the README.
type JSONEvent struct {
	Schema   int    `json:"schema"`
	Type     string `json:"type"` // "event"
	Time     string `json:"time"` // RFC 3339, UTC, nanoseconds
	Kind     string `json:"kind"` // connect | sendmsg | file | open | exec
	Verdict  string `json:"verdict"`
	RuleID   uint32 `json:"rule_id,omitempty"`
	PID      uint32 `json:"pid"`
	TID      uint32 `json:"tid"`
	Comm     string `json:"comm"`
	CgroupID uint64 `json:"cgroup_id"`

	Family     string `json:"family,omitempty"` // inet | inet6
	Protocol   string `json:"protocol,omitempty"`
	DstAddr    string `json:"dst_addr,omitempty"`
	DstPort    uint16 `json:"dst_port,omitempty"`
	MappedIPv4 bool   `json:"mapped_ipv4,omitempty"`
	// RequestedAddr: the unspecified address the caller asked for, which
	// the kernel turns into the local DstAddr judged in its place.
	RequestedAddr string `json:"requested_addr,omitempty"`

	Dev      *uint32 `json:"dev,omitempty"`
	Ino      *uint64 `json:"ino,omitempty"`
	Op       string  `json:"op,omitempty"`
	RulePath string  `json:"rule_path,omitempty"`

	Path   string  `json:"path,omitempty"`
	Flags  *uint32 `json:"flags,omitempty"`
	Ret    *int32  `json:"ret,omitempty"`    // open: the result, an fd or -errno
	Result string  `json:"result,omitempty"` // open: "ok" or the errno name
	// PathSource: open and exec: where Path comes from (file, file-partial,
	// file-unlinked, argument).
	PathSource string `json:"path_source,omitempty"`
	// Target: fileop: Path is the new name of a rename or link.
	Target bool `json:"target,omitempty"`

	Tool  string     `json:"tool,omitempty"`  // tool events: the tool's name
	Query string     `json:"query,omitempty"` // dns events: the name asked
	QType string     `json:"qtype,omitempty"` // dns events: the query type (A, AAAA, TYPE65, ...)
	MCP   MCPContext `json:"mcp,omitempty"`   // the MCP requests in flight (assay run --mcp)
}

// ToJSON converts an event to its JSON form.
func (r *Renderer) ToJSON(e Event) JSONEvent {
	j := JSONEvent{
		Schema: SchemaVersion, Type: "event", Time: r.wall(e.MonoNS).UTC().Format(JSONTime), Kind: e.Kind.String(),
		Verdict: e.Verdict.String(), RuleID: e.RuleID, PID: e.PID, TID: e.TID, Comm: e.Comm, CgroupID: e.CgroupID,
	}
	switch e.Kind {
	case KindConnect, KindSendmsg:
		j.Family = "inet"
		if e.Family == AFInet6 {
			j.Family = "inet6"
		}
		j.Protocol = protoName(e.Protocol)
		j.DstAddr = e.Addr.String()
		j.DstPort = e.Port
		j.MappedIPv4 = e.Mapped
		j.RequestedAddr = e.Unspec.String()
	case KindFile:
		dev, ino := e.Dev, e.Ino
		j.Dev, j.Ino = &dev, &ino
		j.Op = e.Op.String()
		j.RulePath = r.rulePath(e.RuleID)
		j.Path = e.Path
	case KindTraceOpen, KindTraceExec, KindTraceUnix, KindTraceFileOp:
		j.Path = e.Path
		j.PathSource = e.Source.String()
		if e.Kind == KindTraceFileOp {
			j.Op, j.Target = e.Op.String(), e.Target
		}
		if e.Kind == KindTraceOpen {
			f, ret := e.Flags, e.Ret
			j.Flags, j.Ret = &f, &ret
			j.Result = openResult(e.Ret)
		}
	case KindTool:
		j.Tool = e.Tool
	case KindDNS:
		j.Query, j.QType = e.Name, QTypeName(e.QType)
	}
	if len(e.MCP) > 0 {
		j.MCP = MCPContext(e.MCP)
	}
	return j
}

// appendJSON appends the JSON form of e: the fields of [JSONEvent], in
// its order, written by hand. encoding/json's reflection was the
// pipeline's hot spot (figure 4 of docs/BENCHMARKS.md); a test checks that
// both give the same object.
func (r *Renderer) appendJSON(b []byte, e Event) []byte {
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, SchemaVersion, 10)
	b = append(b, `,"type":"event","time":"`...)
	b = r.wall(e.MonoNS).UTC().AppendFormat(b, JSONTime)
	b = append(b, `","kind":"`...)
	b = append(b, e.Kind.String()...)
	b = append(b, `","verdict":"`...)
	b = append(b, e.Verdict.String()...)
	b = append(b, '"')
	if e.RuleID != 0 {
		b = append(b, `,"rule_id":`...)
		b = strconv.AppendUint(b, uint64(e.RuleID), 10)
	}
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(e.PID), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(e.TID), 10)
	b = append(b, `,"comm":`...)
	b = appendJSONString(b, e.Comm)
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, e.CgroupID, 10)
	switch e.Kind {
	case KindConnect, KindSendmsg:
		if e.Family == AFInet6 {
			b = append(b, `,"family":"inet6"`...)
		} else {
			b = append(b, `,"family":"inet"`...)
		}
		b = append(b, `,"protocol":"`...)
		b = append(b, protoName(e.Protocol)...)
		b = append(b, `","dst_addr":"`...)
		b = e.Addr.AppendTo(b)
		b = append(b, '"')
		if e.Port != 0 {
			b = append(b, `,"dst_port":`...)
			b = strconv.AppendUint(b, uint64(e.Port), 10)
		}
		if e.Mapped {
			b = append(b, `,"mapped_ipv4":true`...)
		}
		if e.Unspec != UnspecNone {
			b = append(b, `,"requested_addr":"`...)
			b = append(b, e.Unspec.String()...)
			b = append(b, '"')
		}
	case KindFile:
		b = append(b, `,"dev":`...)
		b = strconv.AppendUint(b, uint64(e.Dev), 10)
		b = append(b, `,"ino":`...)
		b = strconv.AppendUint(b, e.Ino, 10)
		b = append(b, `,"op":"`...)
		b = append(b, e.Op.String()...)
		b = append(b, '"')
		if p := r.rulePath(e.RuleID); p != "" {
			b = append(b, `,"rule_path":`...)
			b = appendJSONString(b, p)
		}
		if e.Path != "" {
			b = append(b, `,"path":`...)
			b = appendJSONString(b, e.Path)
		}
	case KindTraceOpen, KindTraceExec, KindTraceUnix, KindTraceFileOp:
		if e.Path != "" {
			b = append(b, `,"path":`...)
			b = appendJSONString(b, e.Path)
		}
		if e.Kind == KindTraceFileOp {
			b = append(b, `,"op":"`...)
			b = append(b, e.Op.String()...)
			b = append(b, '"')
			if e.Target {
				b = append(b, `,"target":true`...)
			}
		}
		if e.Kind == KindTraceOpen {
			b = append(b, `,"flags":`...)
			b = strconv.AppendUint(b, uint64(e.Flags), 10)
			b = append(b, `,"ret":`...)
			b = strconv.AppendInt(b, int64(e.Ret), 10)
			b = append(b, `,"result":"`...)
			b = append(b, openResult(e.Ret)...)
			b = append(b, '"')
		}
		b = append(b, `,"path_source":"`...)
		b = append(b, e.Source.String()...)
		b = append(b, '"')
	case KindTool:
		b = append(b, `,"tool":`...)
		b = appendJSONString(b, e.Tool)
	case KindDNS:
		if e.Name != "" {
			b = append(b, `,"query":`...)
			b = appendJSONString(b, e.Name)
		}
		b = append(b, `,"qtype":"`...)
		b = append(b, QTypeName(e.QType)...)
		b = append(b, '"')
	}
	if len(e.MCP) > 0 {
		b = append(b, `,"mcp":`...)
		b = appendMCPJSON(b, e.MCP)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, every control character
// escaped (a hostile comm or path must not reach a terminal raw). Invalid UTF-8 becomes
// U+FFFD, as with encoding/json.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', byte(c))
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029: // C0, DEL, C1, line separators
			b = append(b, '\\', 'u', hex[c>>12&0xf], hex[c>>8&0xf], hex[c>>4&0xf], hex[c&0xf])
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return append(b, '"')
}

// openResult names an open's result: "ok", or the errno (EACCES, ...).
func openResult(ret int32) string {
	if ret >= 0 {
		return "ok"
	}
	if name := unix.ErrnoName(unix.Errno(-ret)); name != "" {
		return name
	}
	return "errno" + strconv.Itoa(int(-ret))
}
