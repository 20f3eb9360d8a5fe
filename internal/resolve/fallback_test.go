package resolve

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"github.com/assaymcp/assay/internal/testenv"
	"golang.org/x/sys/unix"
)

// onThreadWithoutOpenat2 runs fn on a dedicated OS thread whose seccomp
// filter makes openat2 fail with errno, as on a kernel (or container
// profile) without it. Seccomp filters and no_new_privs installed without
// TSYNC apply to the calling thread only; the thread is locked and never
// unlocked, so the runtime discards it when the goroutine exits.
func onThreadWithoutOpenat2(t *testing.T, errno unix.Errno, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		filter := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_OPENAT2},
			{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)},
			{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		}
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			done <- err
			return
		}
		if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		testenv.Skipf(t, "cannot install a seccomp filter: %v", err)
	}
}

func TestPathFallsBackWithoutOpenat2(t *testing.T) {
	d := tree(t)
	file := filepath.Join(d, "sub", "inner")
	want := statIdentity(t, file)
	for _, errno := range []unix.Errno{unix.ENOSYS, unix.EPERM} {
		var (
			probe              error
			got                Identity
			gotErr, symErr     error
			missErr, expectErr error
		)
		onThreadWithoutOpenat2(t, errno, func() {
			_, probe = pathByOpenat2(file, file)
			got, gotErr = Path(file)
			_, symErr = Path(filepath.Join(d, "rel", "inner"))
			_, missErr = Path(filepath.Join(d, "nope"))
		})
		_, expectErr = pathByWalk(filepath.Join(d, "rel", "inner"))
		if probe != errno {
			t.Fatalf("%v: openat2 under the filter returned %v, want %v (filter not effective)", errno, probe, errno)
		}
		if gotErr != nil || got != want {
			t.Errorf("%v: Path(%s) = %+v, %v; want %+v", errno, file, got, gotErr, want)
		}
		if !errors.Is(symErr, ErrSymlink) || symErr.Error() != expectErr.Error() {
			t.Errorf("%v: symlink error %v, want %v", errno, symErr, expectErr)
		}
		if !errors.Is(missErr, os.ErrNotExist) {
			t.Errorf("%v: missing path error %v, want not-exist", errno, missErr)
		}
	}
	// The process itself still has openat2.
	if _, err := pathByOpenat2(file, file); err != nil {
		t.Errorf("openat2 after the test: %v", err)
	}
}
