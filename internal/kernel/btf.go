package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// The only kernel module whose types the programs use (bpf/file.h: the
// subvolume of a btrfs inode).
const btrfsModule = "btrfs"

var relocTargets struct {
	mu     sync.Mutex
	loaded bool
	kernel *btf.Spec
	extra  []*btf.Spec
	btrfs  bool
	err    error
}

// programOptions are the load options of every Assay program: CO-RE
// relocations against vmlinux and, when the btrfs module is loaded, its
// BTF. By default the library would decode the BTF of every loaded module
// on every load (seconds each under emulation, with xfs and overlay
// loaded); the specs are decoded once per process here (until
// ReleaseCaches).
func programOptions() (ebpf.ProgramOptions, error) {
	relocTargets.mu.Lock()
	defer relocTargets.mu.Unlock()
	if !relocTargets.loaded {
		relocTargets.loaded = true
		relocTargets.kernel, relocTargets.extra, relocTargets.btrfs, relocTargets.err = nil, nil, false, nil
		k, err := btf.LoadKernelSpec()
		if err != nil {
			relocTargets.err = err
		} else {
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
		}
	}
	if relocTargets.err != nil {
		return ebpf.ProgramOptions{}, relocTargets.err
	}
	return ebpf.ProgramOptions{KernelTypes: relocTargets.kernel, ExtraRelocationTargets: relocTargets.extra}, nil
}

// ReleaseCaches frees what loading programs needed and a running instance
// does not: the kernel's BTF (decoded types) and the parsed embedded
// object, several MiB of a monitor's heap otherwise kept for its life.
// A later load (a reload that needs more programs, the identity iterator)
// parses them again.
func ReleaseCaches() {
	relocTargets.mu.Lock()
	relocTargets.loaded = false
	relocTargets.kernel, relocTargets.extra, relocTargets.err = nil, nil, nil
	relocTargets.mu.Unlock()
	embedded.mu.Lock()
	embedded.loaded = false
	embedded.spec, embedded.err = nil, nil
	embedded.mu.Unlock()
}

// lsmHookArgs returns how many arguments the running kernel's BPF LSM hook
// has (the BTF of its bpf_lsm_HOOK function), or -1 when it has no such
// hook.
func lsmHookArgs(hook string) (int, error) {
	opts, err := programOptions()
	if err != nil {
		return 0, err
	}
	var fn *btf.Func
	if err := opts.KernelTypes.TypeByName("bpf_lsm_"+hook, &fn); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return -1, nil
		}
		return 0, err
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return 0, fmt.Errorf("bpf_lsm_%s is not a function in the kernel's BTF", hook)
	}
	return len(proto.Params), nil
}

// fileProgramsHere lists the file programs to load on this kernel: hooks
// whose arguments changed between kernel versions have one program per
// shape, and hooks younger than the oldest supported kernel are loaded
// where they exist.
func fileProgramsHere() ([]string, error) {
	var out []string
	for _, name := range filePrograms {
		switch name {
		case bpfProgInodeSetattr, bpfProgInodeSetattrIdmap:
			n, err := lsmHookArgs("inode_setattr")
			if err != nil {
				return nil, err
			}
			// (dentry, attr) before Linux 6.9, (idmap, dentry, attr) after.
			if (n == 2) != (name == bpfProgInodeSetattr) {
				continue
			}
		case bpfProgInodeSetAcl, bpfProgInodeRemoveAcl:
			n, err := lsmHookArgs(name)
			if err != nil {
				return nil, err
			}
			if n < 0 {
				continue // before 6.2: ACLs are xattrs, judged by inode_setxattr
			}
		}
		out = append(out, name)
	}
	return out, nil
}

// observeHookArgs is how many arguments each hook of the LSM observe
// programs (bpf/observe.h) takes, as they are written: a kernel whose hook
// differs is observed on the trace path instead.
var observeHookArgs = map[string]int{"file_open": 1, "mmap_file": 4, "file_mprotect": 3, "path_unlink": 2,
	"path_rmdir": 2, "path_mkdir": 3, "path_mknod": 4, "path_symlink": 3, "path_link": 3, "path_rename": 5,
	"path_truncate": 1, "path_chmod": 2, "path_chown": 3, "file_truncate": 1}

// optionalObserveHooks are attached where the kernel has them.
var optionalObserveHooks = map[string]bool{"file_truncate": true} // Linux 6.2

// ObserveLSMHere reports whether `assay learn` can observe in the LSM
// hooks here: BPF LSM works (ProbeLSM) and the kernel has the hooks the
// observe programs attach to, with the arguments they expect (the path_*
// hooks need CONFIG_SECURITY_PATH). The error says what is missing.
func ObserveLSMHere() error {
	if err := ProbeLSM(); err != nil {
		return err
	}
	hooks := make([]string, 0, len(observeHookArgs))
	for h := range observeHookArgs {
		hooks = append(hooks, h)
	}
	sort.Strings(hooks)
	for _, h := range hooks {
		n, err := lsmHookArgs(h)
		if err != nil {
			return err
		}
		switch {
		case n < 0 && optionalObserveHooks[h]:
		case n < 0:
			return &FeatureError{Feature: "BPF LSM hook " + h, Err: errors.New("the kernel has no such hook"),
				Fix: "the path hooks need a kernel built with CONFIG_SECURITY_PATH"}
		case n != observeHookArgs[h]:
			return &FeatureError{Feature: "BPF LSM hook " + h, Err: fmt.Errorf("it has %d arguments here, assay's observe program expects %d", n, observeHookArgs[h]),
				Fix: "this assay does not know this kernel's hook"}
		}
	}
	return nil
}

// observeProgramsHere lists the LSM observe programs to load here: those
// of optional hooks only where the kernel has them.
func observeProgramsHere() ([]string, error) {
	spec, err := embeddedSpec()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range observePrograms {
		if p := spec.Programs[name]; p != nil && optionalObserveHooks[p.AttachTo] {
			n, err := lsmHookArgs(p.AttachTo)
			if err != nil {
				return nil, err
			}
			if n < 0 {
				continue
			}
		}
		out = append(out, name)
	}
	return out, nil
}

var embedded struct {
	mu     sync.Mutex
	loaded bool
	spec   *ebpf.CollectionSpec
	err    error
}

// embeddedSpec returns a copy of the embedded BPF object's spec, parsed
// once per process (start-up parses it for the probe, the identity
// iterator and the load: tens of milliseconds each, seconds under
// emulation), until ReleaseCaches.
func embeddedSpec() (*ebpf.CollectionSpec, error) {
	embedded.mu.Lock()
	defer embedded.mu.Unlock()
	if !embedded.loaded {
		embedded.loaded = true
		embedded.spec, embedded.err = loadBpf()
	}
	if embedded.err != nil {
		return nil, embedded.err
	}
	return embedded.spec.Copy(), nil
}
