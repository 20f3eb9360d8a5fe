// Package load holds the load programs of Assay's benchmarks: tight loops
// of one system call pattern, timed inside the process that makes the
// calls, so that process start-up, cgroup placement and reporting never
// enter the figure.
//
// A benchmark binary re-executes itself as a load program: its TestMain (or
// an init function) calls [MaybeRun] first, which runs the action named by
// $ASSAY_BENCH_LOAD and exits. [Spawn] starts such a process directly inside
// a cgroup (clone3 CLONE_INTO_CGROUP), so no instruction of it runs outside
// the scope being measured.
//
// The loops make raw system calls (no Go scheduler hand-off around each
// call): the per-operation figure is the kernel's cost plus a few
// nanoseconds, which makes any added kernel cost show as large a ratio as it
// really is.
package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Env names the action a re-executed benchmark binary performs.
const Env = "ASSAY_BENCH_LOAD"

// Result is what a load program reports: one JSON object on its stdout.
type Result struct {
	Action string  `json:"action"`
	PID    int     `json:"pid"`
	Ops    int64   `json:"ops"`       // operations timed (warm-up excluded)
	NS     int64   `json:"ns"`        // wall-clock time of the timed loop
	NsOp   float64 `json:"ns_per_op"` // NS / Ops
	// Rate is Ops per second of wall-clock time.
	Rate float64 `json:"rate"`
	// EPERM counts operations refused with EPERM; Errors other failures
	// (the first one in FirstErr).
	EPERM    int64  `json:"eperm"`
	Errors   int64  `json:"errors"`
	FirstErr string `json:"first_err,omitempty"`
	// UserNS and SysNS are the CPU time of the whole process (getrusage).
	UserNS int64 `json:"user_ns"`
	SysNS  int64 `json:"sys_ns"`
	CPU    int   `json:"cpu"` // the CPU the loop was pinned to; -1: not pinned
}

// Options of one load run.
type Options struct {
	Action string
	Target string // ADDR:PORT for network actions, a path for open
	N      int64  // timed operations (0: run for Duration)
	Warmup int64  // untimed operations first
	CPU    int    // pin to this CPU; -1: do not pin
	// Rate paces the loop to this many operations per second (0: as fast
	// as possible); Duration bounds it when N is 0.
	Rate     float64
	Duration time.Duration
	// StartAt, when non-zero, is a CLOCK_MONOTONIC time (ns) to wait for
	// before starting, so that several load processes start together.
	StartAt int64
	// Landlock, when set, restricts the load thread with Landlock to
	// reading beneath this directory before the loop (see landlockAllow).
	Landlock string
}

// Actions.
const (
	TCPConnect = "tcp-connect" // socket + connect + close (SO_LINGER 0: RST, no TIME_WAIT)
	UDPSendto  = "udp-sendto"  // unconnected sendto of one byte on one socket
	OpenClose  = "open-close"  // openat(O_RDONLY) + close
)

func (o Options) args() []string {
	a := []string{
		"-action", o.Action, "-target", o.Target,
		"-n", fmt.Sprint(o.N), "-warmup", fmt.Sprint(o.Warmup), "-cpu", fmt.Sprint(o.CPU),
		"-rate", fmt.Sprint(o.Rate), "-duration", o.Duration.String(), "-start-at", fmt.Sprint(o.StartAt),
	}
	if o.Landlock != "" {
		a = append(a, "-landlock", o.Landlock)
	}
	return a
}

// MaybeRun runs the load program and exits when $ASSAY_BENCH_LOAD is set;
// otherwise it returns at once.
func MaybeRun() {
	if os.Getenv(Env) == "" {
		return
	}
	os.Exit(Main(os.Args[1:]))
}

// Main parses the load program's arguments, runs it and prints its Result.
func Main(args []string) int {
	runtime.LockOSThread()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Action, "action", "", "")
	fs.StringVar(&o.Target, "target", "", "")
	fs.Int64Var(&o.N, "n", 0, "")
	fs.Int64Var(&o.Warmup, "warmup", 0, "")
	fs.IntVar(&o.CPU, "cpu", -1, "")
	fs.Float64Var(&o.Rate, "rate", 0, "")
	fs.DurationVar(&o.Duration, "duration", 0, "")
	fs.Int64Var(&o.StartAt, "start-at", 0, "")
	fs.StringVar(&o.Landlock, "landlock", "", "")
	serve := fs.Bool("serve", false, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *serve {
		if err := Serve(o, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			return 2
		}
		return 0
	}
	res, err := Run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	out, _ := json.Marshal(res)
	os.Stdout.Write(append(out, '\n'))
	return 0
}

// Run performs the load in this process (on the calling thread, which it
// locks).
func Run(o Options) (Result, error) {
	runtime.LockOSThread()
	res := Result{Action: o.Action, PID: os.Getpid(), CPU: o.CPU}
	if err := pin(o.CPU); err != nil {
		return res, err
	}
	if o.N <= 0 && o.Duration <= 0 {
		return res, errors.New("give -n or -duration")
	}
	if o.Landlock != "" {
		if err := landlockAllow(o.Landlock); err != nil {
			return res, err
		}
	}
	op, cleanup, err := newOp(o)
	if err != nil {
		return res, err
	}
	defer cleanup()
	for i := int64(0); i < o.Warmup; i++ {
		op(&res)
	}
	res.EPERM, res.Errors, res.FirstErr = 0, 0, ""
	if o.StartAt > 0 {
		for d := o.StartAt - monoNow(); d > 0; d = o.StartAt - monoNow() {
			time.Sleep(time.Duration(d))
		}
	}
	var ru0, ru1 unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := monoNow()
	var n int64
	switch {
	case o.Rate > 0:
		// Paced: batches of ops, each batch started no earlier than its
		// schedule; behind schedule, the loop runs flat out to catch up.
		const batch = 64
		interval := float64(time.Second) / o.Rate
		end := int64(0)
		if o.Duration > 0 {
			end = start + int64(o.Duration)
		}
		for {
			if o.N > 0 && n >= o.N {
				break
			}
			now := monoNow()
			if end > 0 && now >= end {
				break
			}
			due := start + int64(float64(n)*interval)
			if due > now {
				sleepNS(due - now)
			}
			for i := 0; i < batch; i++ {
				op(&res)
			}
			n += batch
		}
	case o.N > 0:
		for ; n < o.N; n++ {
			op(&res)
		}
	default:
		end := start + int64(o.Duration)
		for monoNow() < end {
			for i := 0; i < 64; i++ {
				op(&res)
			}
			n += 64
		}
	}
	stop := monoNow()
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	res.Ops = n
	res.NS = stop - start
	if n > 0 {
		res.NsOp = float64(res.NS) / float64(n)
	}
	if res.NS > 0 {
		res.Rate = float64(n) / (float64(res.NS) / 1e9)
	}
	res.UserNS = tvNS(ru1.Utime) - tvNS(ru0.Utime)
	res.SysNS = tvNS(ru1.Stime) - tvNS(ru0.Stime)
	return res, nil
}

func tvNS(tv unix.Timeval) int64 { return tv.Sec*1e9 + tv.Usec*1e3 }

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// MonoNow is CLOCK_MONOTONIC in ns (for Options.StartAt).
func MonoNow() int64 { return monoNow() }

func sleepNS(d int64) {
	ts := unix.NsecToTimespec(d)
	_ = unix.Nanosleep(&ts, nil)
}

func (r *Result) fail(e syscall.Errno) {
	if e == unix.EPERM {
		r.EPERM++
		return
	}
	r.Errors++
	if r.FirstErr == "" {
		r.FirstErr = unix.ErrnoName(e)
		if r.FirstErr == "" {
			r.FirstErr = e.Error()
		}
	}
}

// rawSockaddr is a destination in the kernel's layout.
type rawSockaddr struct {
	family int
	buf    [28]byte
	len    uintptr
}

func parseTarget(s string) (rawSockaddr, error) {
	var sa rawSockaddr
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return sa, fmt.Errorf("target %q: %w", s, err)
	}
	port := ap.Port()
	if ap.Addr().Is4() {
		sa.family = unix.AF_INET
		rs := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.buf[0]))
		rs.Family = unix.AF_INET
		rs.Port = port<<8 | port>>8
		rs.Addr = ap.Addr().As4()
		sa.len = unix.SizeofSockaddrInet4
		return sa, nil
	}
	sa.family = unix.AF_INET6
	rs := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.buf[0]))
	rs.Family = unix.AF_INET6
	rs.Port = port<<8 | port>>8
	rs.Addr = ap.Addr().As16()
	sa.len = unix.SizeofSockaddrInet6
	return sa, nil
}

var atFDCWD = func() uintptr { v := unix.AT_FDCWD; return uintptr(v) }()

// newOp returns the operation of the action, made with raw system calls.
func newOp(o Options) (func(*Result), func(), error) {
	nop := func() {}
	switch o.Action {
	case TCPConnect:
		sa, err := parseTarget(o.Target)
		if err != nil {
			return nil, nop, err
		}
		linger := unix.Linger{Onoff: 1, Linger: 0}
		return func(r *Result) {
			fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(sa.family), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if e != 0 {
				r.fail(e)
				return
			}
			_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa.buf[0])), sa.len)
			if e != 0 {
				r.fail(e)
			} else {
				// RST on close: no TIME_WAIT, so the loop never runs out
				// of ephemeral ports.
				unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_LINGER,
					uintptr(unsafe.Pointer(&linger)), unsafe.Sizeof(linger), 0)
			}
			unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}, nop, nil
	case UDPSendto:
		sa, err := parseTarget(o.Target)
		if err != nil {
			return nil, nop, err
		}
		fd, err := unix.Socket(sa.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nop, err
		}
		payload := []byte{'x'}
		return func(r *Result) {
			_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&payload[0])), 1, 0,
				uintptr(unsafe.Pointer(&sa.buf[0])), sa.len)
			if e != 0 {
				r.fail(e)
			}
		}, func() { unix.Close(fd) }, nil
	case OpenClose:
		p, err := unix.BytePtrFromString(o.Target)
		if err != nil {
			return nil, nop, err
		}
		return func(r *Result) {
			fd, _, e := unix.RawSyscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(p)),
				unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
			if e != 0 {
				r.fail(e)
				return
			}
			unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}, nop, nil
	}
	return nil, nop, fmt.Errorf("unknown action %q", o.Action)
}

// pin pins the calling thread to cpu (-1: no pinning).
func pin(cpu int) error {
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

// Serve runs chunks of the load on request: for each line "N" read from
// in, it performs N operations and writes one line "NS EPERM ERRORS" (the
// wall-clock time of the chunk and its failures). It returns at EOF.
// Several served load programs, driven in turn, give paired measurements
// taken milliseconds apart: noise from the rest of the machine hits the
// baseline and the monitored chunks alike.
func Serve(o Options, in io.Reader, out io.Writer) error {
	runtime.LockOSThread()
	if err := pin(o.CPU); err != nil {
		return err
	}
	if o.Landlock != "" {
		if err := landlockAllow(o.Landlock); err != nil {
			return err
		}
	}
	op, cleanup, err := newOp(o)
	if err != nil {
		return err
	}
	defer cleanup()
	var res Result
	for i := int64(0); i < o.Warmup; i++ {
		op(&res)
	}
	sc := bufio.NewScanner(in)
	w := bufio.NewWriter(out)
	for sc.Scan() {
		var n int64
		if _, err := fmt.Sscan(sc.Text(), &n); err != nil {
			return fmt.Errorf("bad request %q", sc.Text())
		}
		res = Result{}
		start := monoNow()
		for i := int64(0); i < n; i++ {
			op(&res)
		}
		ns := monoNow() - start
		fmt.Fprintf(w, "%d %d %d\n", ns, res.EPERM, res.Errors)
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Server is a load program started with Serve.
type Server struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
}

// StartServer starts exe as a served load program in the cgroup open at
// cgroupFD (-1: the caller's cgroup). It has done its warm-up when the
// first chunk's answer arrives.
func StartServer(exe string, cgroupFD int, o Options) (*Server, error) {
	s := &Server{}
	s.cmd = exec.Command(exe, append(o.args(), "-serve")...)
	s.cmd.Env = loadEnv()
	s.cmd.Stderr = &s.stderr
	var err error
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.out = bufio.NewReader(stdout)
	if cgroupFD >= 0 {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start load %s: %w", o.Action, err)
	}
	return s, nil
}

// Chunk runs n operations and returns their wall-clock time in ns and the
// failures.
func (s *Server) Chunk(n int64) (ns, eperm, errs int64, err error) {
	if _, err := fmt.Fprintf(s.in, "%d\n", n); err != nil {
		return 0, 0, 0, fmt.Errorf("load: %v; stderr: %s", err, s.stderr.String())
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return 0, 0, 0, fmt.Errorf("load: %v; stderr: %s", err, s.stderr.String())
	}
	_, err = fmt.Sscan(line, &ns, &eperm, &errs)
	return ns, eperm, errs, err
}

// Pid is the load program's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Close ends the load program.
func (s *Server) Close() error {
	s.in.Close()
	return s.cmd.Wait()
}

func loadEnv() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, Env+"=") {
			env = append(env, kv)
		}
	}
	return append(env, Env+"=1")
}

// Process is a started load program.
type Process struct {
	Cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// Start starts exe (a binary whose start-up calls MaybeRun) as a load
// program placed into the cgroup open at cgroupFD (-1: stay in the caller's
// cgroup).
func Start(exe string, cgroupFD int, o Options) (*Process, error) {
	p := &Process{}
	p.Cmd = exec.Command(exe, o.args()...)
	p.Cmd.Env = loadEnv()
	p.Cmd.Stdout, p.Cmd.Stderr = &p.stdout, &p.stderr
	if cgroupFD >= 0 {
		p.Cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start load %s: %w", o.Action, err)
	}
	return p, nil
}

// Wait waits for the load program and returns its report.
func (p *Process) Wait() (Result, error) {
	var res Result
	err := p.Cmd.Wait()
	if err != nil {
		return res, fmt.Errorf("load %q: %v; stderr: %s", p.Cmd.Args[1:], err, strings.TrimSpace(p.stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return res, fmt.Errorf("load %q: bad report %q: %v", p.Cmd.Args[1:], p.stdout.String(), err)
	}
	return res, nil
}

// Spawn runs a load program to completion in the cgroup open at cgroupFD.
func Spawn(exe string, cgroupFD int, o Options) (Result, error) {
	p, err := Start(exe, cgroupFD, o)
	if err != nil {
		return Result{}, err
	}
	return p.Wait()
}
