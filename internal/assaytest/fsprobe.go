package assaytest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// fileProbes are the probe actions that change or reach files other than
// by a plain open: each makes exactly one system call under test and
// records its errno.
//
//	open-by-handle MOUNTDIR TYPE HEXHANDLE   open_by_handle_at + read (see FileHandle)
//	unlink PATH | rmdir PATH | mkdir PATH | mknod PATH | create PATH
//	symlink TARGET PATH | truncate PATH | open-trunc PATH | punch PATH
//	chmod PATH | chown PATH | utimes PATH | setxattr PATH | removexattr PATH
//	exec-file PATH                           execve(PATH) directly
//	mmap-exec PATH                           open read-only + mmap(PROT_EXEC)
//	mprotect-exec PATH                       open read-only + mmap(PROT_READ) + mprotect(PROT_EXEC)
//	mmap-exec-fd FD | mprotect-exec-fd FD    the same on an inherited descriptor (see ProbeWith)
//	unix-connect PATH | unix-send PATH       a stream connect / a datagram sendto
//	unix-connect-abstract NAME               a stream connect to @NAME
var fileProbes = map[string]probeAction{
	"open-by-handle": probeOpenByHandle,
	"unlink":         onePath(func(p string) error { return unix.Unlink(p) }),
	"rmdir":          onePath(func(p string) error { return unix.Rmdir(p) }),
	"mkdir":          onePath(func(p string) error { return unix.Mkdir(p, 0o755) }),
	"mknod":          onePath(func(p string) error { return unix.Mknod(p, unix.S_IFIFO|0o644, 0) }),
	"create": onePath(func(p string) error {
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}),
	"truncate": onePath(func(p string) error { return unix.Truncate(p, 0) }),
	"open-trunc": onePath(func(p string) error {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}),
	"chmod":  onePath(func(p string) error { return unix.Chmod(p, 0o777) }),
	"chown":  onePath(func(p string) error { return unix.Lchown(p, 65534, 65534) }),
	"utimes": onePath(func(p string) error { return unix.UtimesNano(p, []unix.Timespec{{Sec: 1}, {Sec: 1}}) }),
	"setxattr": onePath(func(p string) error {
		return unix.Setxattr(p, "user.assay", []byte("x"), 0)
	}),
	"removexattr": onePath(func(p string) error { return unix.Removexattr(p, "user.assay") }),
	"symlink": func(r *ProbeResult, args []string) error {
		if len(args) != 2 {
			return errors.New("usage: symlink TARGET PATH")
		}
		r.setErr(unix.Symlink(args[0], args[1]))
		return nil
	},
	"punch":                 probePunch,
	"exec-file":             onePath(func(p string) error { return unix.Exec(p, []string{p}, nil) }),
	"mmap-exec":             probeMmapExec,
	"mprotect-exec":         probeMprotectExec,
	"mmap-exec-fd":          fdMap(false),
	"mprotect-exec-fd":      fdMap(true),
	"unix-connect":          probeUnix(unix.SOCK_STREAM, false),
	"unix-send":             probeUnix(unix.SOCK_DGRAM, false),
	"unix-connect-abstract": probeUnix(unix.SOCK_STREAM, true),
}

func onePath(call func(string) error) func(*ProbeResult, []string) error {
	return func(r *ProbeResult, args []string) error {
		if len(args) != 1 {
			return errors.New("usage: ACTION PATH")
		}
		r.setErr(call(args[0]))
		return nil
	}
}

// FileHandle returns the name_to_handle_at handle of path as the
// arguments of the open-by-handle probe: its type and hex bytes.
func FileHandle(path string) (typ string, hexHandle string, err error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return "", "", err
	}
	return strconv.Itoa(int(h.Type())), hex.EncodeToString(h.Bytes()), nil
}

func probeOpenByHandle(r *ProbeResult, args []string) error {
	if len(args) != 3 {
		return errors.New("usage: open-by-handle MOUNTDIR TYPE HEXHANDLE")
	}
	typ, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	b, err := hex.DecodeString(args[2])
	if err != nil {
		return err
	}
	mfd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(int32(typ), b), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	readAll(r, fd)
	return nil
}

func probePunch(r *ProbeResult, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: punch PATH")
	}
	// A write open of a denied file already fails: that errno is reported.
	fd, err := unix.Open(args[0], unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	r.setErr(unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096))
	return nil
}

func probeMmapExec(r *ProbeResult, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: mmap-exec PATH")
	}
	fd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
	if err != nil {
		r.setErr(err)
		return nil
	}
	return unix.Munmap(b)
}

func probeMprotectExec(r *ProbeResult, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: mprotect-exec PATH")
	}
	fd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.setErr(err)
		return nil
	}
	defer unix.Close(fd)
	return mapExec(r, fd, true)
}

// fdMap maps an inherited descriptor executable: with mmap(PROT_EXEC), or
// (mprotect) readable first and then executable with mprotect.
func fdMap(mprotect bool) probeAction {
	return func(r *ProbeResult, args []string) error {
		if len(args) != 1 {
			return errors.New("usage: mmap-exec-fd|mprotect-exec-fd FD")
		}
		fd, err := strconv.Atoi(args[0])
		if err != nil {
			return fmt.Errorf("fd %q: %w", args[0], err)
		}
		return mapExec(r, fd, mprotect)
	}
}

// mapExec maps one page of fd executable, recording the errno of the
// call under test (mmap, or mprotect after a readable mmap).
func mapExec(r *ProbeResult, fd int, mprotect bool) error {
	prot := unix.PROT_READ | unix.PROT_EXEC
	if mprotect {
		prot = unix.PROT_READ
	}
	b, err := unix.Mmap(fd, 0, 4096, prot, unix.MAP_PRIVATE)
	if err != nil {
		if mprotect {
			return fmt.Errorf("readable mmap: %w", err)
		}
		r.setErr(err)
		return nil
	}
	defer unix.Munmap(b)
	if mprotect {
		r.setErr(unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC))
	}
	return nil
}

func probeUnix(typ int, abstract bool) func(*ProbeResult, []string) error {
	return func(r *ProbeResult, args []string) error {
		if len(args) != 1 {
			return errors.New("usage: unix-connect|unix-send PATH")
		}
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		name := args[0]
		if abstract {
			name = "@" + name
		}
		sa := &unix.SockaddrUnix{Name: name}
		if typ == unix.SOCK_STREAM {
			r.setErr(unix.Connect(fd, sa))
		} else {
			r.setErr(unix.Sendto(fd, []byte("ping"), 0, sa))
		}
		return nil
	}
}
