package assaytest

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeNet is the "net" action: one way of reaching a destination.
//
//	net METHOD NETWORK ADDR:PORT [BIND]
//
// METHOD is connect (connect(2)), sendto (unconnected sendto(2) of a
// datagram), fastopen (sendto(2) with MSG_FASTOPEN on a TCP socket: TCP Fast
// Open, connect and data in one call) or uring-connect (IORING_OP_CONNECT
// through an io_uring). NETWORK is tcp4|tcp6|udp4|udp6|mptcp4|mptcp6 (mptcp:
// an IPPROTO_MPTCP stream socket); a *6 network uses an AF_INET6 socket, so
// ::ffff:a.b.c.d is a mapped destination on it. BIND, when given, is an
// address the socket is bound to (port 0) first. Errno is the outcome;
// Out the socket's local address after a success.
func probeNet(r *ProbeResult, args []string) error {
	if len(args) != 3 && len(args) != 4 {
		return errors.New("usage: net connect|sendto|fastopen|uring-connect NETWORK ADDR:PORT [BIND]")
	}
	method, network, addr := args[0], args[1], args[2]
	proto := 0
	if rest, ok := strings.CutPrefix(network, "mptcp"); ok {
		network, proto = "tcp"+rest, unix.IPPROTO_MPTCP
	}
	family, typ, sa, err := sockaddr(network, addr)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if len(args) == 4 {
		b, err := netip.ParseAddr(args[3])
		if err != nil {
			return fmt.Errorf("bind address: %w", err)
		}
		var bsa unix.Sockaddr = &unix.SockaddrInet4{Addr: b.As4()}
		if family == unix.AF_INET6 {
			bsa = &unix.SockaddrInet6{Addr: b.As16()}
		}
		if err := unix.Bind(fd, bsa); err != nil {
			return fmt.Errorf("bind %s: %w", b, err)
		}
	}
	data := []byte(fmt.Sprintf("assaytest probe %d", r.PID))
	switch method {
	case "connect":
		r.setErr(unix.Connect(fd, sa))
	case "sendto":
		r.setErr(unix.Sendto(fd, data, 0, sa))
	case "fastopen":
		if typ != unix.SOCK_STREAM {
			return errors.New("fastopen needs a stream socket")
		}
		r.setErr(unix.Sendto(fd, data, unix.MSG_FASTOPEN, sa))
	case "uring-connect":
		err := uringConnect(fd, sa)
		var errno unix.Errno
		if err != nil && !errors.As(err, &errno) {
			return err // io_uring itself failed: not the outcome under test
		}
		r.setErr(err)
	default:
		return fmt.Errorf("unknown method %q", method)
	}
	if r.Ok() {
		r.Out = localAddr(fd)
	}
	return nil
}

// io_uring, as much as one operation at a time needs (no cgo, no library):
// the layouts of include/uapi/linux/io_uring.h.
type uringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  struct {
		Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
		UserAddr                                                        uint64
	}
	CqOff struct {
		Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
		UserAddr                                                        uint64
	}
}

type uringSQE struct {
	Opcode, Flags uint8
	Ioprio        uint16
	Fd            int32
	Off, Addr     uint64
	Len, OpFlags  uint32
	UserData      uint64
	BufIndex      uint16
	Personality   uint16
	SpliceFdIn    int32
	Addr3, Pad    uint64
}

type uringCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

const (
	uringOpConnect     = 16
	uringOpOpenat      = 18
	uringOpUnlinkat    = 36
	uringOffSQRing     = 0
	uringOffCQRing     = 0x8000000
	uringOffSQEs       = 0x10000000
	uringEnterGetEvent = 1
)

// uringConnect connects fd to sa with one IORING_OP_CONNECT and returns
// the completion's result as an errno (nil on success). Other errors are
// io_uring's own.
func uringConnect(fd int, sa unix.Sockaddr) error {
	raw, err := rawSockaddr(sa)
	if err != nil {
		return err
	}
	res, err := uringDo(uringSQE{Opcode: uringOpConnect, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(&raw[0]))), Off: uint64(len(raw))})
	runtime.KeepAlive(raw) // the kernel read it during io_uring_enter
	if err != nil {
		return err
	}
	if res < 0 {
		return unix.Errno(-res)
	}
	return nil
}

// uringDo submits one operation through a new io_uring, waits for its
// completion and returns its result (the caller keeps the memory sqe
// points to alive). Errors are io_uring's own.
func uringDo(op uringSQE) (int32, error) {
	var p uringParams
	rfd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return 0, fmt.Errorf("io_uring_setup: %v", e)
	}
	ring := int(rfd)
	defer unix.Close(ring)
	sq, err := unix.Mmap(ring, uringOffSQRing, int(p.SqOff.Array+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return 0, fmt.Errorf("mmap SQ ring: %v", err)
	}
	defer unix.Munmap(sq)
	cq, err := unix.Mmap(ring, uringOffCQRing, int(p.CqOff.Cqes+p.CqEntries*uint32(unsafe.Sizeof(uringCQE{}))), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return 0, fmt.Errorf("mmap CQ ring: %v", err)
	}
	defer unix.Munmap(cq)
	sqes, err := unix.Mmap(ring, uringOffSQEs, int(p.SqEntries*uint32(unsafe.Sizeof(uringSQE{}))), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return 0, fmt.Errorf("mmap SQEs: %v", err)
	}
	defer unix.Munmap(sqes)

	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	sqe := (*uringSQE)(unsafe.Pointer(&sqes[0]))
	op.UserData = 1
	*sqe = op
	tail := atomic.LoadUint32(u32(sq, p.SqOff.Tail))
	mask := *u32(sq, p.SqOff.RingMask)
	*u32(sq, p.SqOff.Array+4*(tail&mask)) = 0
	atomic.StoreUint32(u32(sq, p.SqOff.Tail), tail+1)
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), 1, 1, uringEnterGetEvent, 0, 0); e != 0 {
		return 0, fmt.Errorf("io_uring_enter: %v", e)
	}
	head := atomic.LoadUint32(u32(cq, p.CqOff.Head))
	if head == atomic.LoadUint32(u32(cq, p.CqOff.Tail)) {
		return 0, errors.New("io_uring: no completion")
	}
	cqe := (*uringCQE)(unsafe.Pointer(&cq[p.CqOff.Cqes+(head&*u32(cq, p.CqOff.RingMask))*uint32(unsafe.Sizeof(uringCQE{}))]))
	res := cqe.Res
	atomic.StoreUint32(u32(cq, p.CqOff.Head), head+1)
	return res, nil
}

// rawSockaddr is sa as the kernel reads it (struct sockaddr_in/_in6).
func rawSockaddr(sa unix.Sockaddr) ([]byte, error) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		b := make([]byte, unix.SizeofSockaddrInet4)
		*(*uint16)(unsafe.Pointer(&b[0])) = unix.AF_INET
		b[2], b[3] = byte(a.Port>>8), byte(a.Port)
		copy(b[4:8], a.Addr[:])
		return b, nil
	case *unix.SockaddrInet6:
		b := make([]byte, unix.SizeofSockaddrInet6)
		*(*uint16)(unsafe.Pointer(&b[0])) = unix.AF_INET6
		b[2], b[3] = byte(a.Port>>8), byte(a.Port)
		copy(b[8:24], a.Addr[:])
		return b, nil
	}
	return nil, fmt.Errorf("unsupported address %T", sa)
}
