package seccomp

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/assaymcp/assay/internal/seccomp/compat32"
	"golang.org/x/sys/unix"
)

// The test binary re-executes itself with SECCOMP_TEST_CHILD=1 to install
// the filter in a process of its own and try the system calls.
func TestMain(m *testing.M) {
	if os.Getenv("SECCOMP_TEST_CHILD") == "1" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

type probe struct {
	name string
	call func() unix.Errno
	want unix.Errno // 0: allowed (any result but the filter's)
}

func raw(nr uintptr, a ...uintptr) func() unix.Errno {
	return func() unix.Errno {
		var args [6]uintptr
		copy(args[:], a)
		_, _, e := unix.RawSyscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
		return e
	}
}

func probes() []probe {
	buf := make([]byte, 64)
	p := uintptr(unsafe.Pointer(&buf[0]))
	return []probe{
		{"bpf", raw(unix.SYS_BPF, 0, p, 16), unix.EPERM},
		{"perf_event_open", raw(unix.SYS_PERF_EVENT_OPEN, p, 0, ^uintptr(0), ^uintptr(0), 0), unix.EPERM},
		{"ptrace", raw(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, 1, 0, 0), unix.EPERM},
		{"process_vm_readv", raw(unix.SYS_PROCESS_VM_READV, 1, 0, 0, 0, 0, 0), unix.EPERM},
		{"pidfd_getfd", raw(unix.SYS_PIDFD_GETFD, 0, 0, 0), unix.EPERM},
		{"kcmp", raw(unix.SYS_KCMP, 1, 1, 0, 0, 0), unix.EPERM},
		{"mount", raw(unix.SYS_MOUNT, 0, 0, 0, 0, 0), unix.EPERM},
		{"fsopen", raw(unix.SYS_FSOPEN, 0, 0), unix.EPERM},
		{"open_tree", raw(unix.SYS_OPEN_TREE, 0, 0, 0), unix.EPERM},
		{"setns", raw(unix.SYS_SETNS, 0, 0), unix.EPERM},
		{"unshare(CLONE_NEWUSER)", raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), unix.EPERM},
		{"unshare(CLONE_NEWUSER|1<<32)", raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER|1<<32), unix.EPERM},
		{"clone(CLONE_NEWUSER)", raw(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0), unix.EPERM},
		{"clone3", raw(unix.SYS_CLONE3, 0, 0), unix.ENOSYS},
		{"keyctl", raw(unix.SYS_KEYCTL, 0, 0), unix.EPERM},
		{"add_key", raw(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0), unix.EPERM},
		{"kexec_load", raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0), unix.EPERM},
		{"finit_module", raw(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0), unix.EPERM},
		{"open_by_handle_at", raw(unix.SYS_OPEN_BY_HANDLE_AT, 0, 0, 0), unix.EPERM},
		{"userfaultfd", raw(unix.SYS_USERFAULTFD, 0), unix.EPERM},
		{"ioctl(TIOCSTI)", raw(unix.SYS_IOCTL, 0, unix.TIOCSTI, p), unix.EPERM},
		{"ioctl(TIOCSTI|1<<32)", raw(unix.SYS_IOCTL, 0, unix.TIOCSTI|1<<32, p), unix.EPERM},
		{"ioctl(TIOCLINUX)", raw(unix.SYS_IOCTL, 0, unix.TIOCLINUX, p), unix.EPERM},
		{"x32 getpid", raw(unix.SYS_GETPID | 0x40000000), unix.ENOSYS},
		// Allowed: the filter must not get in the way of ordinary calls.
		{"unshare(0)", raw(unix.SYS_UNSHARE, 0), 0},
		{"ioctl(TIOCGWINSZ)", raw(unix.SYS_IOCTL, 0, unix.TIOCGWINSZ, p), 0},
		{"ioctl(TIOCSTI^1)", raw(unix.SYS_IOCTL, 0, unix.TIOCSTI^1, p), 0},
		{"getpid", raw(unix.SYS_GETPID), 0},
		// i386 getpid (20) through int $0x80: in the 64-bit table 20 is
		// writev. Refused whatever the number.
		{"int80 getpid", func() unix.Errno {
			if r := compat32.Syscall(20, 0, 0, 0); r < 0 {
				return unix.Errno(-r)
			}
			return 0
		}, unix.EPERM},
	}
}

func child() int {
	runtime.LockOSThread()
	if err := Install(); err != nil {
		fmt.Println("install:", err)
		return 1
	}
	for _, pr := range probes() {
		if (pr.name == "x32 getpid" || pr.name == "int80 getpid") && runtime.GOARCH != "amd64" {
			continue
		}
		fmt.Printf("%s=%d\n", pr.name, int(pr.call()))
	}
	return 0
}

func TestFilter(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SECCOMP_TEST_CHILD=1")
	cmd.Stdin = nil // fd 0 is not a terminal: ioctls reach the kernel and fail ENOTTY
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]unix.Errno{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("child: %s", out)
		}
		var n int
		fmt.Sscan(v, &n)
		got[k] = unix.Errno(n)
	}
	for _, pr := range probes() {
		e, ok := got[pr.name]
		if !ok {
			if (pr.name == "x32 getpid" || pr.name == "int80 getpid") && runtime.GOARCH != "amd64" {
				continue
			}
			t.Errorf("%s: not tried", pr.name)
			continue
		}
		switch {
		case pr.want != 0 && e != pr.want:
			t.Errorf("%s: errno %v (%d), want %v", pr.name, unix.ErrnoName(e), e, unix.ErrnoName(pr.want))
		case pr.want == 0 && e == unix.EPERM:
			t.Errorf("%s: EPERM, want the call let through", pr.name)
		}
	}
}

// TestCompat32Works: without the filter, the 32-bit entry point answers
// (so TestFilter's EPERM is the filter's).
func TestCompat32Works(t *testing.T) {
	if !compat32.Supported {
		t.Skip("no 32-bit entry point on " + runtime.GOARCH)
	}
	if r := compat32.Syscall(20, 0, 0, 0); r != int32(os.Getpid()) {
		t.Fatalf("int $0x80 getpid = %d, want %d", r, os.Getpid())
	}
}

func TestRefusedNamesExist(t *testing.T) {
	if _, err := Program(); err != nil {
		t.Fatal(err)
	}
}
