package kernel

import (
	"errors"
	"io/fs"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The only kernel module whose types the programs use (bpf/file.h: the
// subvolume of a btrfs inode).
const btrfsModule = "btrfs"

var relocTargets struct {
	once   sync.Once
	kernel *btf.Spec
	extra  []*btf.Spec
	btrfs  bool
	err    error
}

// programOptions are the load options of every Assay program: CO-RE
// relocations against vmlinux and, when the btrfs module is loaded, its
// BTF. By default the library would decode the BTF of every loaded module
// on every load (seconds each under emulation, with xfs and overlay
// loaded); the specs are decoded once per process here.
func programOptions() (ebpf.ProgramOptions, error) {
	relocTargets.once.Do(func() {
		k, err := btf.LoadKernelSpec()
		if err != nil {
			relocTargets.err = err
			return
		}
		relocTargets.kernel = k
		m, err := btf.LoadKernelModuleSpec(btrfsModule)
		switch {
		case err == nil:
			relocTargets.extra = []*btf.Spec{m}
			relocTargets.btrfs = true
		case errors.Is(err, fs.ErrNotExist):
		default:
			relocTargets.err = err
		}
	})
	if relocTargets.err != nil {
		return ebpf.ProgramOptions{}, relocTargets.err
	}
	return ebpf.ProgramOptions{KernelTypes: relocTargets.kernel, ExtraRelocationTargets: relocTargets.extra}, nil
}
