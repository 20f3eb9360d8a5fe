// File probe actions.

package assaytest

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

func init() {
	fileActions["open"] = probeOpen
	fileActions["reopen"] = probeReopen
	fileActions["open-deep"] = probeOpenDeep
	fileActions["open-until"] = probeOpenUntil
	fileActions["link"] = func(r *ProbeResult, args []string) error { return probeLinkRename(r, "link", args) }
	fileActions["rename"] = func(r *ProbeResult, args []string) error { return probeLinkRename(r, "rename", args) }
}

func probeOpen(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: open PATH r|w")
	}
	var flags int
	switch args[1] {
	case "r":
		flags = unix.O_RDONLY
	case "w":
		flags = unix.O_WRONLY
	default:
		return fmt.Errorf("open flags %q: want r or w", args[1])
	}
	fd, err := unix.Open(args[0], flags|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	if flags == unix.O_RDONLY {
		readAll(r, fd)
	}
	return nil
}

// readAll reads up to 64 KiB of fd into r.Out.
func readAll(r *ProbeResult, fd int) {
	var data []byte
	buf := make([]byte, 4096)
	for len(data) < 64<<10 {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			r.setErr(err)
			break
		}
		if n == 0 {
			break
		}
		data = append(data, buf[:n]...)
	}
	r.Out = string(data)
}

func probeReopen(r *ProbeResult, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: reopen PATH")
	}
	pfd, err := unix.Open(args[0], unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(fmt.Errorf("open O_PATH: %w", err))
		return nil
	}
	defer unix.Close(pfd)
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	readAll(r, fd)
	return nil
}

func probeOpenDeep(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: open-deep DIR N NAME")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 {
		return fmt.Errorf("bad depth %q", args[1])
	}
	dfd, err := unix.Open(args[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(fmt.Errorf("open %s O_PATH: %w", args[0], err))
		return nil
	}
	for i := 0; i < n; i++ {
		next, err := unix.Openat(dfd, "n", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(dfd)
		if err != nil {
			r.setErr(fmt.Errorf("openat level %d O_PATH: %w", i+1, err))
			return nil
		}
		dfd = next
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, args[2], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	readAll(r, fd)
	return nil
}

func probeOpenUntil(r *ProbeResult, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: open-until STOP PATH")
	}
	return untilStop(args[0], func() {
		r.Attempts++
		fd, err := unix.Open(args[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EPERM {
			r.N++
			return
		}
		r.Other++
		if err != nil {
			r.setErr(err)
			return
		}
		unix.Close(fd)
	})
}

func probeLinkRename(r *ProbeResult, action string, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s OLD NEW", action)
	}
	if action == "link" {
		r.setErr(unix.Link(args[0], args[1]))
	} else {
		r.setErr(unix.Rename(args[0], args[1]))
	}
	return nil
}
