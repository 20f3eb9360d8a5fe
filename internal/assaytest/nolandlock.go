package assaytest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noLandlockEnv makes the re-executed test binary exec its arguments with
// the Landlock system calls failing (see [WithoutLandlock]).
const noLandlockEnv = "ASSAYTEST_NO_LANDLOCK"

// WithoutLandlock returns an unstarted command running the assay binary
// with args in a process where the Landlock system calls fail with ENOSYS,
// as on a kernel built without Landlock: the test binary re-executes
// itself, installs a seccomp filter (kept across exec under no_new_privs)
// and execs assay. The test's TestMain must call [Main] or [RunMain].
func WithoutLandlock(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{Binary(t)}, args...)...)
	cmd.Env = append(os.Environ(), noLandlockEnv+"=1")
	return cmd
}

// execWithoutLandlock is the re-executed side of WithoutLandlock.
func execWithoutLandlock(args []string) int {
	runtime.LockOSThread()
	os.Unsetenv(noLandlockEnv)
	if err := DenyLandlock(); err != nil {
		fmt.Fprintln(os.Stderr, "assaytest:", err)
		return 2
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "assaytest: nothing to exec")
		return 2
	}
	err := syscall.Exec(args[0], args, os.Environ())
	fmt.Fprintln(os.Stderr, "assaytest: exec:", err)
	return 2
}

// DenyLandlock makes the Landlock system calls fail with ENOSYS for the
// calling thread and what it execs (no_new_privs and a seccomp filter), as
// on a kernel without Landlock. Lock the thread first.
func DenyLandlock() error {
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, Jt: 0, Jf: 2, K: unix.SYS_LANDLOCK_CREATE_RULESET},
		{Code: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, Jt: 1, Jf: 0, K: unix.SYS_LANDLOCK_RESTRICT_SELF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}
