// Package events decodes the records the kernel programs put in the ring
// buffers and renders them for operators (text) and programs (JSON).
package events

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Record layout, mirrored from internal/kernel/bpf (a test in package
// kernel checks the sizes against the generated Go types).
const (
	HeaderSize = 48
	NetSize    = HeaderSize + 24
	FileSize   = HeaderSize + 16
	TraceSize  = HeaderSize + 16 + TracePathMax
	// TracePathMax is how much of a traced path the kernel copies.
	TracePathMax = 256
)

// FileOpTarget is the bit of a KindTraceFileOp record's flags that marks
// the new name of a rename or link (bpf/trace_change.h FILEOP_TARGET).
const FileOpTarget = 0x100

// Kind is what happened.
type Kind uint8

// Event kinds.
const (
	KindConnect   Kind = 1
	KindSendmsg   Kind = 2
	KindFile      Kind = 3
	KindTraceOpen Kind = 4
	KindTraceExec Kind = 5
	// KindTraceUnix is a traced Unix-socket connect: Path is the socket
	// file the connect reached, named by the kernel.
	KindTraceUnix Kind = 6
	// KindTraceFileOp is an observed change to a file (unlink, rename,
	// mkdir, chmod, ...; Op says which, Target marks the new name of a
	// rename or link) or an executable mapping (OpMmap): `assay learn`
	// only (internal/kernel/bpf/observe.h, trace_change.h).
	KindTraceFileOp Kind = 7
	// KindTool is a tools/call that assay itself refused (or, in audit
	// mode, let through) under the policy's mcp.tools rules (`assay run
	// --mcp`). It never comes from the kernel: Decode rejects it.
	KindTool Kind = 64
	// KindDNS is a DNS query assay's resolver refused (or, in audit mode,
	// answered although no host entry allows the name): policy v2 host
	// entries (internal/dns). It never comes from the kernel either.
	KindDNS Kind = 65
)

func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindSendmsg:
		return "sendmsg"
	case KindFile:
		return "file"
	case KindTraceOpen:
		return "open"
	case KindTraceExec:
		return "exec"
	case KindTraceUnix:
		return "unix"
	case KindTraceFileOp:
		return "fileop"
	case KindTool:
		return "tool"
	case KindDNS:
		return "dns"
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// Verdict is what the kernel did.
type Verdict uint8

// Verdicts.
const (
	VerdictBlocked  Verdict = 1 // refused with EPERM
	VerdictAudit    Verdict = 2 // would have been refused; audit mode let it through
	VerdictObserved Verdict = 3 // tracepoint observation; nothing was decided
)

func (v Verdict) String() string {
	switch v {
	case VerdictBlocked:
		return "blocked"
	case VerdictAudit:
		return "audit"
	case VerdictObserved:
		return "observed"
	}
	return fmt.Sprintf("verdict%d", uint8(v))
}

// FileOp is the operation a file event refused.
type FileOp uint8

// File operations.
const (
	OpOpen        FileOp = 1
	OpLink        FileOp = 2
	OpRename      FileOp = 3
	OpUnlink      FileOp = 4
	OpRmdir       FileOp = 5
	OpCreate      FileOp = 6
	OpMkdir       FileOp = 7
	OpMknod       FileOp = 8
	OpSymlink     FileOp = 9
	OpTruncate    FileOp = 10
	OpChmod       FileOp = 11
	OpChown       FileOp = 12
	OpUtimes      FileOp = 13
	OpSetattr     FileOp = 14
	OpSetxattr    FileOp = 15
	OpRemovexattr FileOp = 16
	OpExec        FileOp = 17
	OpMmap        FileOp = 18 // mapped (or mprotect'ed) executable
	OpConnect     FileOp = 19 // a Unix stream socket connect
	OpSend        FileOp = 20 // a Unix datagram sent
)

var fileOpNames = [...]string{OpOpen: "open", OpLink: "link", OpRename: "rename", OpUnlink: "unlink",
	OpRmdir: "rmdir", OpCreate: "create", OpMkdir: "mkdir", OpMknod: "mknod", OpSymlink: "symlink",
	OpTruncate: "truncate", OpChmod: "chmod", OpChown: "chown", OpUtimes: "utimes", OpSetattr: "setattr",
	OpSetxattr: "setxattr", OpRemovexattr: "removexattr", OpExec: "exec", OpMmap: "mmap",
	OpConnect: "connect", OpSend: "send"}

func (o FileOp) String() string {
	if int(o) < len(fileOpNames) && fileOpNames[o] != "" {
		return fileOpNames[o]
	}
	return fmt.Sprintf("op%d", uint8(o))
}

// Unspec is the unspecified address a network event's caller asked for.
type Unspec uint8

// Unspecified destinations (assay_net_event.unspec).
const (
	UnspecNone   Unspec = 0
	UnspecV4     Unspec = 1 // 0.0.0.0
	UnspecV6     Unspec = 2 // ::
	UnspecMapped Unspec = 3 // ::ffff:0.0.0.0
)

// String is the address asked for, "" for UnspecNone.
func (u Unspec) String() string {
	switch u {
	case UnspecV4:
		return "0.0.0.0"
	case UnspecV6:
		return "::"
	case UnspecMapped:
		return "::ffff:0.0.0.0"
	}
	return ""
}

// Address families as the kernel numbers them.
const (
	AFInet  = 2
	AFInet6 = 10
)

// PathSource says where a traced path comes from
// (assay_trace_event.source).
type PathSource uint16

// Path sources.
const (
	// SourceArg: the path argument as written in the caller's memory (a
	// failed open, which opened no file). A racing thread can change it.
	SourceArg PathSource = 0
	// SourceFile: the path of the opened or executed file, built by the
	// kernel program from the file's dentries and mounts.
	SourceFile PathSource = 1
	// SourceDirArg: the directory the call started from (its dirfd, or
	// the working directory) named by the kernel, the rest of the path
	// the argument as written in the caller's memory (a change observed
	// on the trace path: the object itself is gone or unnamed). A racing
	// thread can change the argument.
	SourceDirArg PathSource = 2
	// With SourceFile: the leading components did not fit in the record
	// (Path holds the last ones, starting with "/").
	SourcePartial PathSource = 0x100
	// With SourceFile: no path reaches the file (deleted, disconnected).
	SourceUnlinked PathSource = 0x200
)

// FromFile reports whether the path names the file the kernel opened, in
// full.
func (s PathSource) FromFile() bool { return s == SourceFile }

// Complete reports whether the path is whole: FromFile, or SourceDirArg
// (not cut short).
func (s PathSource) Complete() bool { return s == SourceFile || s == SourceDirArg }

func (s PathSource) String() string {
	switch {
	case s == SourceFile:
		return "file"
	case s&SourceFile != 0 && s&SourcePartial != 0:
		return "file-partial"
	case s&SourceFile != 0 && s&SourceUnlinked != 0:
		return "file-unlinked"
	case s == SourceDirArg:
		return "dir+argument"
	case s&SourceDirArg != 0:
		return "dir+argument-partial"
	}
	return "argument"
}

// Event is one decoded record.
type Event struct {
	Kind     Kind
	Verdict  Verdict
	RuleID   uint32
	PID      uint32 // process id (kernel tgid)
	TID      uint32 // thread id (kernel pid)
	CgroupID uint64
	MonoNS   uint64 // CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns)
	Comm     string

	// Network events.
	Family   uint16
	Protocol uint8
	Port     uint16
	Addr     netip.Addr
	Mapped   bool // an IPv4-mapped IPv6 destination, judged as IPv4
	// Unspec: the caller asked for an unspecified address (0.0.0.0, ::,
	// ::ffff:0.0.0.0), which the kernel turns into a local one; Addr is
	// the address judged in its place.
	Unspec Unspec

	// File events.
	Dev uint32 // kernel encoding: major<<20 | minor
	Ino uint64
	Op  FileOp

	// Trace events.
	Path  string
	Flags uint32
	Ret   int32 // the open's result: an fd, or -errno
	// Source says where Path comes from (see PathSource).
	Source PathSource
	// Target: a KindTraceFileOp record names the new name of a rename or
	// link (Op says which), not the old one.
	Target bool

	// Tool events: the tool's name.
	Tool string

	// DNS events: the name asked (lower case, no trailing dot) and the
	// query type (1 A, 28 AAAA, ...).
	Name  string
	QType uint16

	// MCP is the MCP context of the event (`assay run --mcp`): the
	// requests the server had been sent and had not answered when the
	// event happened, oldest first; none between requests.
	MCP []MCPCall
}

// ErrMalformed marks a record that cannot be decoded.
var ErrMalformed = errors.New("malformed record")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Decode parses one ring-buffer record. It never panics: short, oversized
// or inconsistent records give an error wrapping ErrMalformed.
func Decode(b []byte) (Event, error) {
	var e Event
	if len(b) < HeaderSize {
		return e, malformed("%d bytes, shorter than the %d-byte header", len(b), HeaderSize)
	}
	le := binary.LittleEndian
	e.Kind = Kind(b[0])
	e.Verdict = Verdict(b[1])
	size := int(le.Uint16(b[2:]))
	e.RuleID = le.Uint32(b[4:])
	e.PID = le.Uint32(b[8:])
	e.TID = le.Uint32(b[12:])
	e.CgroupID = le.Uint64(b[16:])
	e.MonoNS = le.Uint64(b[24:])
	e.Comm = cString(b[32:48])
	if e.Verdict < VerdictBlocked || e.Verdict > VerdictObserved {
		return e, malformed("unknown verdict %d", e.Verdict)
	}
	want := 0
	switch e.Kind {
	case KindConnect, KindSendmsg:
		want = NetSize
	case KindFile:
		want = FileSize
	case KindTraceOpen, KindTraceExec, KindTraceUnix, KindTraceFileOp:
		want = TraceSize
	default: // KindTool and KindDNS included: never kernel records
		return e, malformed("unknown kind %d", e.Kind)
	}
	if size != want || len(b) < want {
		return e, malformed("%s record of %d bytes (header says %d), want %d", e.Kind, len(b), size, want)
	}
	p := b[HeaderSize:want]
	switch e.Kind {
	case KindConnect, KindSendmsg:
		e.Family = le.Uint16(p[0:])
		e.Port = le.Uint16(p[2:])
		e.Protocol = p[4]
		e.Mapped = p[5] == 1
		e.Unspec = Unspec(p[6])
		if e.Unspec > UnspecMapped {
			return e, malformed("unknown unspecified-address code %d", p[6])
		}
		switch e.Family {
		case AFInet:
			e.Addr = netip.AddrFrom4([4]byte(p[8:12]))
		case AFInet6:
			e.Addr = netip.AddrFrom16([16]byte(p[8:24]))
		default:
			return e, malformed("unknown address family %d", e.Family)
		}
	case KindFile:
		e.Dev = le.Uint32(p[0:])
		e.Op = FileOp(p[4])
		e.Ino = le.Uint64(p[8:])
	case KindTraceOpen, KindTraceExec, KindTraceUnix, KindTraceFileOp:
		e.Flags = le.Uint32(p[0:])
		e.Ret = int32(le.Uint32(p[4:]))
		n := int(le.Uint16(p[8:]))
		if n > TracePathMax-1 {
			return e, malformed("path length %d exceeds %d", n, TracePathMax-1)
		}
		e.Source = PathSource(le.Uint16(p[10:]))
		e.Path = string(p[16 : 16+n])
		if e.Kind == KindTraceFileOp {
			e.Op = FileOp(e.Flags & 0xff)
			e.Target = e.Flags&FileOpTarget != 0
		}
	}
	return e, nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
