// Package seccomp builds and installs the seccomp filter that `assay run`
// puts on the command (pure Go, with github.com/elastic/go-seccomp-bpf).
//
// The filter is a deny list: everything not listed is allowed. What it
// refuses, and why, is in [Refused]; the README carries the same table.
//
//   - The architecture field is matched first: a system call made through
//     another entry point (the 32-bit int 0x80 / compat entry on x86-64, or
//     AArch32 on arm64) is refused with EPERM whatever its number, so that
//     nothing reaches the kernel through a syscall table the list does not
//     describe. 32-bit programs therefore do not run under `assay run`.
//   - On x86-64, x32 system calls (numbers with bit 30 set) are refused with
//     ENOSYS.
//   - clone3 is refused with ENOSYS: its flags are in memory, where a
//     seccomp filter cannot read them. The C library then falls back to
//     clone, whose flags are a register and are checked (glibc 2.34+ and
//     musl do this; Go does not use clone3 unless asked for a cgroup or
//     CLONE_NEWTIME).
//   - Argument checks compare only the bits the kernel reads: ioctl's
//     command is an unsigned int, so the upper half of the register is
//     ignored (matching all 64 bits would let TIOCSTI|1<<32 through).
package seccomp

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	libseccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Rule is one refused system call (or a refused use of one).
type Rule struct {
	Names []string
	Errno syscall.Errno
	Why   string
	// The call is refused only when argument Arg has these bits set
	// (Flags), or when its low 32 bits equal one of Values.
	Arg    uint32
	Flags  uint64
	Values []uint32
}

// Refused lists what the default filter refuses and why.
var Refused = []Rule{
	{Names: []string{"bpf"}, Errno: unix.EPERM, Why: "load or change BPF programs and maps, including assay's own"},
	{Names: []string{"perf_event_open"}, Errno: unix.EPERM, Why: "observe other processes and the kernel; attach BPF programs"},
	{Names: []string{"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"}, Errno: unix.EPERM, Why: "read or write the memory of other processes, or compare their descriptors"},
	{Names: []string{"pidfd_getfd"}, Errno: unix.EPERM, Why: "take a descriptor (e.g. a socket created outside the sandbox) from another process"},
	{Names: []string{"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"}, Errno: unix.EPERM, Why: "change the file system view under the path rules"},
	{Names: []string{"setns"}, Errno: unix.EPERM, Why: "enter another namespace"},
	{Names: []string{"unshare", "clone"}, Errno: unix.EPERM, Arg: 0, Flags: unix.CLONE_NEWUSER, Why: "a new user namespace gives capabilities over new namespaces and widens the kernel's attack surface"},
	{Names: []string{"clone3"}, Errno: unix.ENOSYS, Why: "its flags are in memory, out of a filter's reach: the C library falls back to clone, whose flags are checked"},
	{Names: []string{"add_key", "request_key", "keyctl"}, Errno: unix.EPERM, Why: "the kernel keyrings are shared beyond the sandbox"},
	{Names: []string{"kexec_load", "kexec_file_load"}, Errno: unix.EPERM, Why: "replace the running kernel"},
	{Names: []string{"init_module", "finit_module", "delete_module"}, Errno: unix.EPERM, Why: "load or remove kernel modules"},
	{Names: []string{"open_by_handle_at"}, Errno: unix.EPERM, Why: "open a file by handle, bypassing path-based rules"},
	{Names: []string{"userfaultfd"}, Errno: unix.EPERM, Why: "stall the kernel at chosen points, the building block of many kernel exploits"},
	{Names: []string{"ioctl"}, Errno: unix.EPERM, Arg: 1, Values: []uint32{unix.TIOCSTI, unix.TIOCLINUX}, Why: "TIOCSTI and TIOCLINUX type input into the terminal, e.g. a command into the operator's shell"},
}

// Program assembles the default filter for this architecture.
func Program() ([]bpf.Instruction, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	pol := libseccomp.Policy{DefaultAction: libseccomp.ActionAllow}
	for _, r := range Refused {
		action := libseccomp.ActionErrno | libseccomp.Action(r.Errno)
		g := libseccomp.SyscallGroup{Action: action}
		switch {
		case r.Flags != 0:
			for _, n := range r.Names {
				g.NamesWithCondtions = append(g.NamesWithCondtions, libseccomp.NameWithConditions{Name: n, Conditions: libseccomp.ArgumentConditions{
					{Argument: r.Arg, Operation: libseccomp.BitsSet, Value: r.Flags},
				}})
			}
		case len(r.Values) > 0:
			for _, n := range r.Names {
				for _, v := range r.Values {
					g.NamesWithCondtions = append(g.NamesWithCondtions, libseccomp.NameWithConditions{Name: n, Conditions: lowEquals(r.Arg, v)})
				}
			}
		default:
			g.Names = r.Names
		}
		pol.Syscalls = append(pol.Syscalls, g)
	}
	body, err := pol.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	// The library sends a foreign architecture to the default action
	// (allow): refuse it before it gets there.
	prefix := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(libseccomp.ActionErrno) | uint32(unix.EPERM)},
	}
	return append(prefix, body...), nil
}

// lowEquals matches when the low 32 bits of argument arg equal v, whatever
// the upper half: no bit outside v is set, and every bit of v is.
func lowEquals(arg, v uint32) libseccomp.ArgumentConditions {
	c := libseccomp.ArgumentConditions{{Argument: arg, Operation: libseccomp.BitsNotSet, Value: uint64(^v)}}
	for b := uint32(0); b < 32; b++ {
		if v&(1<<b) != 0 {
			c = append(c, libseccomp.Condition{Argument: arg, Operation: libseccomp.BitsSet, Value: uint64(1) << b})
		}
	}
	return c
}

// Install sets no_new_privs and installs the default filter on the calling
// thread (lock it: the filter is meant for what that thread executes next).
func Install() error {
	insts, err := Program()
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if len(raw) > 0xffff {
		return errors.New("seccomp: filter too long")
	}
	f := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		f[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("installing the seccomp filter: %w", errno)
	}
	return nil
}
