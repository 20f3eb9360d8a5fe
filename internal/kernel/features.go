package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The kernel feature probes `assay doctor` reports, beside [ProbeLSM] and
// [ActiveLSMs]. Each loads or asks the kernel, rather than reading
// configuration.

// BTFPath is the kernel's own BTF, which CO-RE relocations need.
const BTFPath = "/sys/kernel/btf/vmlinux"

// Release returns the running kernel's release (uname -r).
func Release() (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(uts.Release[:]), nil
}

// ReleaseAtLeast reports whether a release string such as "6.1.0-56-cloud"
// is at least major.minor.
func ReleaseAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	n := 0
	for n < len(parts[1]) && parts[1][n] >= '0' && parts[1][n] <= '9' {
		n++
	}
	mi, err2 := strconv.Atoi(parts[1][:n])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// BPFFSMounted reports whether bpffs is mounted at [BPFFS].
func BPFFSMounted() bool {
	var sfs unix.Statfs_t
	return unix.Statfs(BPFFS, &sfs) == nil && sfs.Type == unix.BPF_FS_MAGIC
}

// Lockdown returns the kernel lockdown mode (none, integrity or
// confidentiality), "" when the kernel has no lockdown LSM. Call it after
// [ActiveLSMs], which mounts securityfs.
func Lockdown() string {
	data, err := os.ReadFile(SecurityFS + "/lockdown")
	if err != nil {
		return ""
	}
	return parseLockdown(string(data))
}

// parseLockdown picks the bracketed mode of "none [integrity] confidentiality".
func parseLockdown(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}

// lsmFix says what to do about refused BPF LSM programs: boot with bpf in
// lsm= when it is missing there; when it is already listed, what else
// refuses them (lockdown, a kernel or hypervisor policy).
func lsmFix() string {
	const alt = "use `assay run`, which enforces file rules with Landlock, or remove the files section from the policy"
	lsms, err := ActiveLSMs()
	if err != nil {
		return "mount securityfs on " + SecurityFS + " to see the LSM list; " + alt
	}
	for _, l := range lsms {
		if l == "bpf" {
			msg := "`bpf` is already in the active LSM list, so something else refuses BPF LSM programs: "
			switch mode := Lockdown(); mode {
			case "confidentiality":
				msg += "kernel lockdown is in confidentiality mode, which refuses BPF programs that read kernel memory (boot with lockdown=integrity or none, or turn off Secure Boot's lockdown)"
			case "":
				msg += "a kernel or hypervisor policy (e.g. a hardened or vendor kernel that refuses BPF LSM and tracing programs)"
			default:
				msg += "kernel lockdown mode is " + mode + " (which does not refuse them on an upstream kernel), so most likely a kernel or hypervisor policy (e.g. a hardened or vendor kernel that refuses BPF LSM and tracing programs)"
			}
			return msg + "; " + alt
		}
	}
	return "boot with `bpf` in the lsm= kernel parameter (e.g. lsm=" + strings.Join(lsms, ",") + ",bpf) on a kernel with CONFIG_BPF_LSM=y; or " + alt
}

// ProbeSockAddr loads the network programs and attaches them to the cgroup
// scope (a fresh, empty one: nothing in it may be judged), then detaches
// them.
func ProbeSockAddr(scope Scope) error {
	inst, err := Load(Config{
		Rules:     Rules{DenyPorts: map[uint16]uint32{1: 1}},
		Scopes:    []Scope{scope},
		RingBytes: os.Getpagesize(),
	})
	if err != nil {
		return err
	}
	defer inst.Close()
	if err := inst.Attach(); err != nil {
		return err
	}
	if inst.Links() == 0 {
		return errors.New("no program was attached")
	}
	return inst.Detach()
}

// ProbeRingbuf creates (and closes) a one-page BPF ring buffer.
func ProbeRingbuf() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "assay_doctor", Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())})
	if err != nil {
		return fmt.Errorf("create a ring buffer: %w", err)
	}
	return m.Close()
}

// PinPresent reports whether the pinned instance name is still pinned (its
// description map is there: bpffs was not unmounted, the pins not removed).
func PinPresent(name string) bool {
	_, err := os.Stat(filepath.Join(PinRoot, name, metaMap))
	return err == nil
}
