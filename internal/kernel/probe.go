package kernel

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SecurityFS is where the kernel lists its active LSMs.
const SecurityFS = "/sys/kernel/security"

// ActiveLSMs returns the kernel's LSM list, mounting securityfs first when
// it is not mounted (it often is not at boot).
func ActiveLSMs() ([]string, error) {
	data, err := os.ReadFile(SecurityFS + "/lsm")
	if errors.Is(err, os.ErrNotExist) {
		if merr := unix.Mount("securityfs", SecurityFS, "securityfs", 0, ""); merr != nil {
			return nil, fmt.Errorf("securityfs is not mounted and mounting it failed: %s", describeErrno(merr))
		}
		data, err = os.ReadFile(SecurityFS + "/lsm")
	}
	if err != nil {
		return nil, fmt.Errorf("read the LSM list: %w", err)
	}
	return strings.Split(strings.TrimSpace(string(data)), ","), nil
}

// ProbeLSM reports whether BPF LSM programs can run here: `bpf` must be in
// the LSM list and a probe program must load and attach. The error names
// which step failed and the errno. The answer cannot change without a
// reboot, so it is computed once per process.
func ProbeLSM() error {
	probeOnce.Do(func() { probeErr = probeLSM() })
	return probeErr
}

var (
	probeOnce sync.Once
	probeErr  error
)

func probeLSM() error {
	lsms, err := ActiveLSMs()
	if err != nil {
		return &FeatureError{Feature: "BPF LSM", Err: err, Fix: "mount securityfs on " + SecurityFS}
	}
	found := false
	for _, l := range lsms {
		found = found || l == "bpf"
	}
	if !found {
		return &FeatureError{Feature: "BPF LSM", Err: fmt.Errorf("`bpf` is not in the active LSM list (%s)", strings.Join(lsms, ",")),
			Fix: "add bpf to the lsm= kernel parameter (e.g. lsm=" + strings.Join(lsms, ",") + ",bpf) and reboot"}
	}
	removeMemlock()
	spec, err := embeddedSpec()
	if err != nil {
		return err
	}
	ps := spec.Programs[bpfProgLsmProbe]
	opts, err := programOptions()
	if err != nil {
		return lsmError("read the kernel's BTF", err)
	}
	prog, err := ebpf.NewProgramWithOptions(ps, opts)
	if err != nil {
		return lsmError("load probe program", err)
	}
	defer prog.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: prog})
	if err != nil {
		return lsmError("attach probe program", err)
	}
	return l.Close()
}
