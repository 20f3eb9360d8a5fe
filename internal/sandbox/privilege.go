package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
)

const (
	capSysAdmin  = 21
	secbitNoroot = 1 << 0 // SECBIT_NOROOT: root gets no capabilities at exec
)

// privilegedChild reports whether a command started with this process's
// credentials would hold CAP_SYS_ADMIN: as root (real or effective uid 0,
// without SECBIT_NOROOT), execve grants the bounding set and the
// inheritable set; as any user, the ambient set is kept.
func privilegedChild() bool {
	if v, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, capSysAdmin, 0, 0); err == nil && v == 1 {
		return true
	}
	if os.Getuid() != 0 && os.Geteuid() != 0 {
		return false
	}
	if bits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0); err == nil && bits&secbitNoroot != 0 {
		return false
	}
	if v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, capSysAdmin, 0, 0, 0); err != nil || v == 1 {
		return true // unknown counts as privileged: the warning is cheap
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return true
	}
	return data[capSysAdmin/32].Inheritable&(1<<(capSysAdmin%32)) != 0
}
