// The learn-attack probe: file accesses `assay learn` must name as the
// objects the kernel operated on, whatever the arguments say.

package assaytest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	fileActions["learn-attack"] = probeLearnAttack
}

// probeLearnAttack: learn-attack DIR N. In DIR it creates a/0..N-1,
// b/0..N-1, r2-old, uring-read and uring-gone; then
//   - N unlinks of DIR/?/i from one buffer while another thread keeps
//     flipping ? between a and b: Out lists what was really removed
//     ("a/0 b/1 ..."), as found afterwards;
//   - a renameat2 of r2-old to r2-new with RENAME_NOREPLACE: Steps
//     "renameat2: ok" when it renamed;
//   - an IORING_OP_OPENAT of uring-read and an IORING_OP_UNLINKAT of
//     uring-gone (no system call carries their paths): Steps
//     "uring-open: ok" (or the errno) and "uring-unlink: ok".
func probeLearnAttack(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: learn-attack DIR N")
	}
	dir := args[0]
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 || n > 1000 {
		return fmt.Errorf("count %q: want 1..1000", args[1])
	}
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
		for i := range n {
			if err := os.WriteFile(filepath.Join(dir, d, strconv.Itoa(i)), nil, 0o644); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"uring-read", "uring-gone", "r2-old"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("u"), 0o644); err != nil {
			return err
		}
	}

	// The race: the flipper rewrites one byte of the argument while the
	// unlinks run.
	buf := make([]byte, len(dir)+16)
	copy(buf, dir+"/a")
	at := len(dir) + 1
	var stop atomic.Bool
	var flips atomic.Int64
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		runtime.LockOSThread()
		p := &buf[at]
		for c := byte('b'); !stop.Load(); c ^= 'a' ^ 'b' {
			*p = c
			flips.Add(1)
		}
	}()
	for flips.Load() == 0 {
		runtime.Gosched()
	}
	var removed []string
	cwd := unix.AT_FDCWD
	for i := range n {
		// Only the name changes here: the directory letter is the
		// flipper's.
		name := strconv.Itoa(i)
		clear(buf[at+1:])
		copy(buf[at+1:], "/"+name)
		unix.Syscall(unix.SYS_UNLINKAT, uintptr(cwd), uintptr(unsafe.Pointer(&buf[0])), 0)
		for _, d := range []string{"a", "b"} {
			if _, err := os.Lstat(filepath.Join(dir, d, name)); errors.Is(err, os.ErrNotExist) {
				removed = append(removed, d+"/"+name)
			}
		}
	}
	stop.Store(true)
	<-flipped
	runtime.KeepAlive(buf)
	r.Out = strings.Join(removed, " ")

	// A rename with flags (the LSM hook has them as an argument).
	r2 := "renameat2: ok"
	if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, "r2-old"), unix.AT_FDCWD, filepath.Join(dir, "r2-new"), unix.RENAME_NOREPLACE); err != nil {
		r2 = "renameat2: " + err.Error()
	} else if _, err := os.Stat(filepath.Join(dir, "r2-new")); err != nil {
		r2 = "renameat2: returned 0, did not rename"
	}
	r.Steps = append(r.Steps, r2)

	uring := func(what string, op uringSQE, path []byte) {
		op.Fd = unix.AT_FDCWD
		op.Addr = uint64(uintptr(unsafe.Pointer(&path[0])))
		res, err := uringDo(op)
		runtime.KeepAlive(path)
		switch {
		case err != nil:
			r.Steps = append(r.Steps, what+": "+err.Error())
		case res < 0:
			r.Steps = append(r.Steps, what+": "+unix.ErrnoName(unix.Errno(-res)))
		default:
			r.Steps = append(r.Steps, what+": ok")
			if op.Opcode == uringOpOpenat {
				unix.Close(int(res))
			}
		}
	}
	uring("uring-open", uringSQE{Opcode: uringOpOpenat, OpFlags: unix.O_RDONLY | unix.O_CLOEXEC}, append([]byte(filepath.Join(dir, "uring-read")), 0))
	uring("uring-unlink", uringSQE{Opcode: uringOpUnlinkat}, append([]byte(filepath.Join(dir, "uring-gone")), 0))
	return nil
}
