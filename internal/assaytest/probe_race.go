// The swapped-path probe: an open whose path argument changes in memory
// while the open is in the kernel (the race a traced path read from user
// memory at syscall exit loses).

package assaytest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	fileActions["open-swapped"] = probeOpenSwapped
}

// probeOpenSwapped: open-swapped FIFO OTHER. A thread opens FIFO (a named
// pipe) for reading, from a buffer; the open waits in the kernel for a
// writer, after the path was looked up. Meanwhile the buffer is rewritten
// to name OTHER, and only then is a writer opened, which lets the open
// return. The open opened FIFO; its argument in memory names OTHER. TID
// is the opening thread, Out "fifo" when fstat says the descriptor is the
// FIFO.
func probeOpenSwapped(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: open-swapped FIFO OTHER")
	}
	fifo, other := args[0], args[1]
	size := max(len(fifo), len(other)) + 1
	buf := make([]byte, size)
	copy(buf, fifo)
	type opened struct {
		tid, fd int
		err     error
	}
	tids := make(chan int, 1)
	done := make(chan opened, 1)
	go func() {
		runtime.LockOSThread() // the thread exits with the goroutine
		tid := unix.Gettid()
		tids <- tid
		dirfd := unix.AT_FDCWD
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&buf[0])), uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		var err error
		if errno != 0 {
			err = errno
		}
		done <- opened{tid, int(fd), err}
	}()
	tid := <-tids
	// Wait until the thread sleeps in openat (257 on x86-64, 56 on arm64):
	// on a FIFO that is the wait for a writer, after the lookup.
	deadline := time.Now().Add(30 * time.Second)
	for {
		sc, _ := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/syscall")
		nr := strings.Fields(string(sc))
		if len(nr) > 0 && nr[0] == strconv.Itoa(unix.SYS_OPENAT) && threadState(tid) == "S" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the opening thread never waited in openat (syscall %q)", sc)
		}
		time.Sleep(time.Millisecond)
	}
	// The swap: the argument now names OTHER.
	clear(buf)
	copy(buf, other)
	w, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the writer: %w", err)
	}
	defer unix.Close(w)
	res := <-done
	runtime.KeepAlive(buf)
	r.TID = res.tid
	if res.err != nil {
		r.setErr(res.err)
		return nil
	}
	defer unix.Close(res.fd)
	var got, want unix.Stat_t
	if err := unix.Fstat(res.fd, &got); err != nil {
		return err
	}
	if err := unix.Stat(fifo, &want); err != nil {
		return err
	}
	if got.Ino == want.Ino && got.Dev == want.Dev {
		r.Out = "fifo"
	}
	return nil
}

// threadState is the state letter of a thread of this process.
func threadState(tid int) string {
	b, _ := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
