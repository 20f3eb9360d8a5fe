// Process probe actions (exec, children) and the wrappers that prepare
// the probe process (set-comm, as-user) before another action.

package assaytest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	procActions["exec"] = probeExec
	procActions["cat"] = func(r *ProbeResult, args []string) error { return probeExec(r, append([]string{"cat"}, args...)) }
	procActions["spawn-grandchild"] = probeGrandchild
	procActions["exec-rusage"] = probeExecRusage
	wrappers["set-comm"] = probeSetComm
	wrappers["as-user"] = func(args []string) (string, []string, error) {
		if err := probeAsUser(args); err != nil {
			return "", nil, err
		}
		return args[2], args[3:], nil
	}
}

// probeSetComm sets the probe's name (comm), then runs ACTION.
func probeSetComm(args []string) (string, []string, error) {
	if len(args) < 2 {
		return "", nil, errors.New("usage: set-comm NAME ACTION [ARG ...]")
	}
	name := append([]byte(args[0]), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
		return "", nil, fmt.Errorf("prctl(PR_SET_NAME): %w", err)
	}
	return args[1], args[2:], nil
}

func probeExec(r *ProbeResult, argv []string) error {
	if len(argv) == 0 {
		return errors.New("usage: exec COMMAND [ARG ...]")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if err != nil {
		r.setErr(err)
		return nil
	}
	r.ChildPID = cmd.Process.Pid
	err = cmd.Wait()
	r.Out = stdout.String()
	r.Exit = cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		r.setErr(err)
	} else if r.Exit != 0 {
		r.Err = strings.TrimSpace(stderr.String())
		if r.Err == "" {
			r.Err = err.Error()
		}
	}
	return nil
}

func probeGrandchild(r *ProbeResult, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: spawn-grandchild ACTION [ARG ...]")
	}
	// The executable's real path, not /proc/self/exe: the grandchild's
	// comm comes from the name it is executed by.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args[1:]...)
	cmd.Env = probeEnviron(args[0])
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("grandchild: %w", err)
	}
	res, err := parseProbe(stdout.Bytes())
	if err != nil {
		return fmt.Errorf("grandchild: %w", err)
	}
	if res.PID != cmd.Process.Pid {
		return fmt.Errorf("grandchild reported pid %d, started as %d", res.PID, cmd.Process.Pid)
	}
	res.Via = r.PID
	*r = res
	return nil
}

func probeExecRusage(r *ProbeResult, argv []string) error {
	if len(argv) == 0 {
		return errors.New("usage: exec-rusage COMMAND [ARG ...]")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		r.setErr(err)
		return nil
	}
	r.ChildPID = cmd.Process.Pid
	err := cmd.Wait()
	r.Out = stdout.String()
	r.Err = stderr.String()
	r.Exit = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss << 10 // KiB on Linux
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		r.setErr(err)
	}
	return nil
}

func probeAsUser(args []string) error {
	if len(args) < 3 {
		return errors.New("usage: as-user UID GID ACTION [ARG ...]")
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("as-user: bad uid %q or gid %q", args[0], args[1])
	}
	// The syscall package applies these to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	return nil
}
