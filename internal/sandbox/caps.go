package sandbox

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capNames are the capability names of capabilities(7), without CAP_.
var capNames = []string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
	"ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
	"lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
	"wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

// harmlessCaps can be kept without the report saying NOT CONTAINED.
var harmlessCaps = map[int]bool{10: true} // net_bind_service

// ParseCap resolves a --cap name (net_bind_service, CAP_NET_BIND_SERVICE).
func ParseCap(s string) (int, error) {
	n := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "cap_")
	for i, c := range capNames {
		if c == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("--cap %q: unknown capability (see capabilities(7), e.g. net_bind_service)", s)
}

// CapName is "CAP_NAME" for a capability number.
func CapName(c int) string {
	if c >= 0 && c < len(capNames) {
		return "CAP_" + strings.ToUpper(capNames[c])
	}
	return "CAP_" + strconv.Itoa(c)
}

// lastCap is the highest capability number the kernel knows: the last
// one PR_CAPBSET_READ accepts (it answers EINVAL beyond). It is asked of
// the kernel rather than read from /proc/sys/kernel/cap_last_cap, because
// the shim runs inside the sandbox, where a version 2 policy under BPF LSM
// cannot grant that sysctl file (its inode number changes on every
// lookup): the read was refused and reported on every start.
func lastCap() int {
	last := -1
	for n := 0; n < 64; n++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(n), 0, 0, 0); err != nil {
			break
		}
		last = n
	}
	if last <= 0 {
		return 63
	}
	return last
}

// dropPrivileges gives the calling thread the identity c and only the
// capabilities keep (in every set, ambient included), and clears all
// others from every set, the bounding set too. Only the calling thread is
// changed (raw system calls): lock it and exec from it.
func dropPrivileges(c Cred, keep []int) error {
	keepSet := map[int]bool{}
	for _, k := range keep {
		keepSet[k] = true
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	last := lastCap()
	for i := 0; i <= last; i++ {
		if keepSet[i] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("dropping %s from the bounding set: %w", CapName(i), err)
		}
	}
	groups := c.Groups
	if groups == nil {
		groups = []uint32{}
	}
	var gp uintptr
	if len(groups) > 0 {
		gp = uintptr(unsafe.Pointer(&groups[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), gp, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.GID), uintptr(c.GID), uintptr(c.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", c.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.UID), uintptr(c.UID), uintptr(c.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", c.UID, e)
	}
	var mask [2]uint32
	for k := range keepSet {
		mask[k/32] |= 1 << (k % 32)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: mask[0], Permitted: mask[0], Inheritable: mask[0]},
		{Effective: mask[1], Permitted: mask[1], Inheritable: mask[1]},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	for k := range keepSet {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(k), 0, 0); err != nil {
			return fmt.Errorf("keeping %s (ambient): %w", CapName(k), err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	return nil
}
