package kernel

import (
	"sync"

	"golang.org/x/sys/unix"
)

// removeMemlock lifts RLIMIT_MEMLOCK once per process, before the first
// load: kernels before 5.11 charge BPF memory to it.
//
// It replaces cilium/ebpf's rlimit package on purpose: that package's
// init creates a BPF map (to detect memory-cgroup accounting) in every
// process that links it, which is every assay process, including the
// shim that starts a command inside its sandbox, where the call and its
// search for a BPF token in /sys/fs/bpf were refused and reported under
// a default-deny file policy.
var removeMemlock = sync.OnceFunc(func() {
	_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
})
