package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// namedLink is an attached program; name is stable and used for pins.
type namedLink struct {
	name string
	prog string
	link link.Link
}

var cgroupAttachTypes = map[string]ebpf.AttachType{
	bpfProgConnect4: ebpf.AttachCGroupInet4Connect,
	bpfProgConnect6: ebpf.AttachCGroupInet6Connect,
	bpfProgSendmsg4: ebpf.AttachCGroupUDP4Sendmsg,
	bpfProgSendmsg6: ebpf.AttachCGroupUDP6Sendmsg,
	bpfProgRecvmsg4: ebpf.AttachCGroupUDP4Recvmsg,
	bpfProgRecvmsg6: ebpf.AttachCGroupUDP6Recvmsg,
}

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
	if err := inst.attachMissing(); err != nil {
		return err
	}
	inst.attached = true
	return nil
}

func (inst *Instance) cgroups() []string {
	if inst.cfg.All {
		return []string{inst.cfg.Root}
	}
	var out []string
	for _, s := range inst.cfg.Scopes {
		out = append(out, s.Path)
	}
	return out
}

func (inst *Instance) isAttached(prog string) bool {
	for _, l := range inst.links {
		if l.prog == prog {
			return true
		}
	}
	return false
}

// attachMissing attaches every loaded program that has no link yet. On
// error, the links it made stay in inst.links (Attach detaches them all;
// Reload keeps them, harmless: they judge by the active generation).
func (inst *Instance) attachMissing() error {
	for _, name := range append(append([]string{}, netPrograms...), dnsPrograms...) {
		p := inst.progs[name]
		if p == nil || inst.isAttached(name) {
			continue
		}
		for i, cg := range inst.cgroups() {
			l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: cgroupAttachTypes[name], Program: p})
			if err != nil {
				return &FeatureError{Feature: "cgroup sock_addr programs (" + name + ")", Err: err,
					Fix: "the kernel needs CONFIG_CGROUP_BPF and cgroup v2; run `assay doctor`"}
			}
			inst.links = append(inst.links, namedLink{name: fmt.Sprintf("link_%s_%d", name, i), prog: name, link: l})
		}
	}
	for _, name := range append(append([]string{}, filePrograms...), observePrograms...) {
		p := inst.progs[name]
		if p == nil || inst.isAttached(name) {
			continue
		}
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			return lsmError("attach lsm/"+name, err)
		}
		inst.links = append(inst.links, namedLink{name: "link_" + name, prog: name, link: l})
	}
	for _, name := range tracePrograms {
		p := inst.progs[name]
		if p == nil || inst.isAttached(name) {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return &FeatureError{Feature: "tp_btf tracing programs (" + name + ")", Err: err,
				Fix: "the kernel needs BTF (/sys/kernel/btf/vmlinux); run without --trace"}
		}
		inst.links = append(inst.links, namedLink{name: "link_" + name, prog: name, link: l})
	}
	return nil
}

// Detach closes every link (and removes its pin, if pinned). The instance
// holds the links for its whole life: a dropped link would be closed by a
// finalizer and silently detach.
func (inst *Instance) Detach() error {
	var errs []error
	for i := len(inst.links) - 1; i >= 0; i-- {
		l := inst.links[i].link
		if inst.pinDir != "" {
			if err := l.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	inst.links = nil
	inst.attached = false
	runtime.KeepAlive(inst)
	return errors.Join(errs...)
}

// LinkFDs returns the descriptors of the instance's links (owned by the
// instance: dup them to hand them on). A process holding a duplicate keeps
// the link, and so the enforcement, attached until it closes it. ok is
// false when a link is not a BPF link with a descriptor (legacy
// attachment).
func (inst *Instance) LinkFDs() (fds []int, ok bool) {
	for _, l := range inst.links {
		f, isFD := l.link.(interface{ FD() int })
		if !isFD {
			return nil, false
		}
		fds = append(fds, f.FD())
	}
	return fds, true
}

// release closes this process's handles on the links, leaving pinned links
// attached.
func (inst *Instance) release() error {
	var errs []error
	for _, l := range inst.links {
		if err := l.link.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	inst.links = nil
	return errors.Join(errs...)
}

// FileProgramsAttached reports whether the file (BPF LSM) programs are
// attached: BPF LSM is then known to work, and a reload bringing file
// rules needs no new program.
func (inst *Instance) FileProgramsAttached() bool { return inst.isAttached(bpfProgFileOpen) }

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
	fix := lsmFix()
	if errors.Is(err, ebpf.ErrNotSupported) {
		// ENOTSUPP from the attach: the kernel cannot build the BPF
		// trampoline LSM programs run through on this architecture
		// (arm64 can from Linux 6.4 on), whatever the LSM list says.
		fix = "this kernel cannot attach BPF LSM programs on " + runtime.GOARCH + " (no BPF trampoline support; arm64 needs Linux 6.4 or later): use a newer kernel, `assay run` (which enforces file rules with Landlock), or remove the files section from the policy"
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// The kernel accepts BPF LSM programs but its verifier refused
		// one of assay's: neither lsm= nor a kernel policy is the cause.
		rel, _ := Release()
		fix = "the kernel's verifier rejected one of assay's programs on Linux " + rel + ": this is an Assay bug on this kernel, please report it with this message; meanwhile use `assay run` (which enforces file rules with Landlock) or remove the files section from the policy"
	}
	return &FeatureError{Feature: "BPF LSM (" + what + ")", Err: err, Fix: fix + "; run `assay doctor`"}
}

func explainLoad(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("the kernel's verifier rejected a program: %w", err)
	}
	return fmt.Errorf("load BPF programs: %s", describeErrno(err))
}
