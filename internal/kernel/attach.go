package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Attach links every loaded program: the socket programs to each scope
// cgroup (or the cgroup2 root for All) with BPF links, which stack with
// other programs already attached there; the LSM and tracing programs
// globally, judged by the in-kernel scope check. Either everything is
// attached or nothing is.
func (inst *Instance) Attach() (err error) {
	if inst.attached {
		return errors.New("already attached")
	}
	defer func() {
		if err != nil {
			inst.Detach()
		}
	}()
	cgroups := []string{}
	if inst.cfg.All {
		cgroups = append(cgroups, inst.cfg.Root)
	} else {
		for _, s := range inst.cfg.Scopes {
			cgroups = append(cgroups, s.Path)
		}
	}
	cgAttach := []struct {
		prog string
		typ  ebpf.AttachType
	}{
		{bpfProgConnect4, ebpf.AttachCGroupInet4Connect},
		{bpfProgConnect6, ebpf.AttachCGroupInet6Connect},
		{bpfProgSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{bpfProgSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
	}
	for _, a := range cgAttach {
		p := inst.coll.Programs[a.prog]
		if p == nil {
			continue
		}
		for _, cg := range cgroups {
			l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: a.typ, Program: p})
			if err != nil {
				return &FeatureError{Feature: "cgroup sock_addr programs (" + a.prog + ")", Err: err,
					Fix: "the kernel needs CONFIG_CGROUP_BPF and cgroup v2; run `assay doctor`"}
			}
			inst.links = append(inst.links, l)
		}
	}
	for _, name := range filePrograms {
		p := inst.coll.Programs[name]
		if p == nil {
			continue
		}
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			return lsmError("attach lsm/"+name, err)
		}
		inst.links = append(inst.links, l)
	}
	for _, name := range tracePrograms {
		p := inst.coll.Programs[name]
		if p == nil {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return &FeatureError{Feature: "tp_btf tracing programs (" + name + ")", Err: err,
				Fix: "the kernel needs BTF (/sys/kernel/btf/vmlinux); run without --trace"}
		}
		inst.links = append(inst.links, l)
	}
	inst.attached = true
	return nil
}

// Detach closes every link. The instance holds the links for its whole
// life: a dropped link would be closed by a finalizer and silently detach.
func (inst *Instance) Detach() error {
	var errs []error
	for i := len(inst.links) - 1; i >= 0; i-- {
		if err := inst.links[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	inst.links = nil
	inst.attached = false
	runtime.KeepAlive(inst)
	return errors.Join(errs...)
}

// Links is the number of attached links.
func (inst *Instance) Links() int { return len(inst.links) }

// FeatureError names a kernel feature that is missing or refused, with what
// to do about it.
type FeatureError struct {
	Feature string
	Err     error
	Fix     string
}

func (e *FeatureError) Error() string {
	msg := e.Feature + " unavailable: " + describeErrno(e.Err)
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *FeatureError) Unwrap() error { return e.Err }

func lsmError(what string, err error) error {
	return &FeatureError{Feature: "BPF LSM (" + what + ")", Err: err,
		Fix: "boot with `bpf` in the lsm= kernel parameter on a kernel with CONFIG_BPF_LSM=y, or remove the files section from the policy; run `assay doctor`"}
}

func explainLoad(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("the kernel's verifier rejected a program: %w", err)
	}
	return fmt.Errorf("load BPF programs: %s", describeErrno(err))
}
