// Network probe actions (socket calls); probe_net.go has the "net" action.

package assaytest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func init() {
	netActions["connect"] = probeConnect
	netActions["sendto"] = probeSendto
	netActions["net"] = probeNet
	netActions["connect-loop"] = probeConnectLoop
	netActions["connect-until"] = probeConnectUntil
	netActions["leave-cgroup"] = probeLeaveCgroup
}

// sockaddr turns "tcp4|tcp6|udp4|udp6" and ADDR:PORT into a socket family,
// type and destination. A *6 network always uses AF_INET6, so an
// ::ffff:a.b.c.d address is a mapped destination on an IPv6 socket.
func sockaddr(network, addr string) (family, typ int, sa unix.Sockaddr, err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, 0, nil, err
	}
	switch network {
	case "tcp4", "tcp6":
		typ = unix.SOCK_STREAM
	case "udp4", "udp6":
		typ = unix.SOCK_DGRAM
	default:
		return 0, 0, nil, fmt.Errorf("network %q: want tcp4, tcp6, udp4 or udp6", network)
	}
	if strings.HasSuffix(network, "4") {
		if !ap.Addr().Is4() {
			return 0, 0, nil, fmt.Errorf("%s is not an IPv4 address", ap.Addr())
		}
		return unix.AF_INET, typ, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
	}
	if ap.Addr().Is4() {
		return 0, 0, nil, fmt.Errorf("%s is an IPv4 address; write ::ffff:%s for a mapped destination", ap.Addr(), ap.Addr())
	}
	return unix.AF_INET6, typ, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
}

func socket(family, typ int) (int, error) {
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// A blocking connect honours SO_SNDTIMEO: never hang on a lost SYN.
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	return fd, nil
}

func localAddr(fd int) string {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return ""
}

func probeConnect(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: connect tcp4|tcp6 ADDR:PORT")
	}
	family, typ, sa, err := sockaddr(args[0], args[1])
	if err != nil {
		return err
	}
	if typ != unix.SOCK_STREAM {
		return errors.New("connect: use tcp4 or tcp6")
	}
	fd, err := socket(family, typ)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	r.setErr(unix.Connect(fd, sa))
	if r.Ok() {
		r.Out = localAddr(fd)
	}
	return nil
}

func probeSendto(r *ProbeResult, args []string) error {
	if len(args) != 2 && len(args) != 3 {
		return errors.New("usage: sendto udp4|udp6 ADDR:PORT [DATA]")
	}
	family, typ, sa, err := sockaddr(args[0], args[1])
	if err != nil {
		return err
	}
	if typ != unix.SOCK_DGRAM {
		return errors.New("sendto: use udp4 or udp6")
	}
	data := "assaytest probe " + strconv.Itoa(r.PID)
	if len(args) == 3 {
		data = args[2]
	}
	fd, err := socket(family, typ)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	r.setErr(unix.Sendto(fd, []byte(data), 0, sa))
	if r.Ok() {
		r.Out = localAddr(fd)
	}
	return nil
}

func probeConnectLoop(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: connect-loop N tcp4|tcp6 ADDR:PORT")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return fmt.Errorf("bad count %q", args[0])
	}
	family, typ, sa, err := sockaddr(args[1], args[2])
	if err != nil {
		return err
	}
	fd := -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	for i := 0; i < n; i++ {
		if err := r.connectOnce(&fd, family, typ, sa); err != nil {
			return err
		}
	}
	return nil
}

// connectOnce makes one connect attempt for the loop actions, counting it
// in r: N for EPERM, Other for anything else. A connect refused by a cgroup
// program leaves the socket unconnected, so *fd is reused for the next
// attempt; after any other outcome it is closed and a new one is made.
func (r *ProbeResult) connectOnce(fd *int, family, typ int, sa unix.Sockaddr) error {
	if *fd < 0 {
		var err error
		if *fd, err = socket(family, typ); err != nil {
			*fd = -1
			return fmt.Errorf("socket: %w", err)
		}
	}
	r.Attempts++
	err := unix.Connect(*fd, sa)
	if err == unix.EPERM {
		r.N++
		return nil
	}
	r.Other++
	r.setErr(err)
	unix.Close(*fd)
	*fd = -1
	return nil
}

func probeConnectUntil(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: connect-until STOP tcp4|tcp6 ADDR:PORT")
	}
	family, typ, sa, err := sockaddr(args[1], args[2])
	if err != nil {
		return err
	}
	fd := -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	var serr error
	err = untilStop(args[0], func() {
		if serr == nil {
			serr = r.connectOnce(&fd, family, typ, sa)
		}
	})
	if serr != nil {
		return serr
	}
	return err
}

func probeLeaveCgroup(r *ProbeResult, args []string) error {
	if len(args) < 3 {
		return errors.New("usage: leave-cgroup tcp4|tcp6 ADDR:PORT PROCS [PROCS ...]")
	}
	for _, procs := range args[2:] {
		step := procs + ": ok"
		f, err := os.OpenFile(procs, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(os.Getpid()))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				step = procs + ": " + unix.ErrnoName(errno)
			} else {
				step = procs + ": " + err.Error()
			}
		}
		r.Steps = append(r.Steps, step)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(cg), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			r.Steps = append(r.Steps, "cgroup: "+rest)
		}
	}
	return probeConnect(r, args[:2])
}
