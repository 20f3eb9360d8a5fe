/* SPDX-License-Identifier: GPL-2.0 */
/* The tracepoint path: observation only. It reports the files that
 * in-scope tasks ask to open and the programs they execute; it never
 * decides anything. */
#pragma once

#include "common.h"

#define TRACE_PATH_MAX 256

/* Per architecture: the syscall numbers of the opens reported, and where
 * the saved user registers hold the syscall number. The arguments are read
 * with bpf_tracing.h's PT_REGS_PARMn_CORE_SYSCALL (CO-RE, so the register
 * layout is the running kernel's). */
#if defined(__TARGET_ARCH_x86)
#define NR_open 2
#define NR_openat 257
#define NR_openat2 437
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#elif defined(__TARGET_ARCH_arm64)
/* arm64 has no open(2): libc calls openat(AT_FDCWD, ...). */
#define NR_openat 56
#define NR_openat2 437
/* vmlinux.h is x86's: declare what the arm64 accessors name. CO-RE
 * relocates the fields against the running kernel's BTF (the ___ suffix
 * is a local flavour of struct pt_regs). */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
} __attribute__((preserve_access_index));
struct pt_regs___assay_arm64 {
	__s32 syscallno;
} __attribute__((preserve_access_index));
#define SYSCALL_NR(regs) BPF_CORE_READ((struct pt_regs___assay_arm64 *)(regs), syscallno)
#else
#error "trace.h: unsupported architecture (add its syscall numbers)"
#endif

struct assay_trace_event {
	struct assay_event_header h;
	__u32 flags;
	__s32 ret;      /* the syscall's result: an fd, or -errno */
	__u16 path_len; /* bytes of path used, NUL excluded */
	__u16 _pad[3];
	char path[TRACE_PATH_MAX];
};

static __always_inline void emit_trace(__u8 kind, __u32 flags, __s32 ret, const void *src, int user)
{
	if (!event_budget(PATH_TRACEPOINT))
		return;
	struct assay_trace_event *e = bpf_ringbuf_reserve(&trace_events, sizeof(*e), 0);
	if (!e) {
		count(PATH_TRACEPOINT, COUNT_DROPPED);
		return;
	}
	fill_header(&e->h, kind, VERDICT_OBSERVED, sizeof(*e), 0);
	e->flags = flags;
	e->ret = ret;
	e->_pad[0] = 0;
	e->_pad[1] = 0;
	e->_pad[2] = 0;
	long n = user ? bpf_probe_read_user_str(e->path, sizeof(e->path), src)
		      : bpf_probe_read_kernel_str(e->path, sizeof(e->path), src);
	e->path_len = n > 0 ? n - 1 : 0;
	bpf_ringbuf_submit(e, 0);
	count(PATH_TRACEPOINT, COUNT_EMITTED);
}

/* Opens are reported at sys_exit, from one program: by then the kernel has
 * copied the path (its page is resident, so the read cannot fault), the
 * result is known, and the saved user registers still hold the syscall
 * number and arguments. One program per syscall instead of an enter/exit
 * pair halves the cost for every task on the host. It runs for every
 * syscall of every task: the syscall number is tested first, the scope
 * (cgroup ancestry) only for the opens. */
SEC("tp_btf/sys_exit")
int BPF_PROG(trace_sys_exit, struct pt_regs *regs, long ret)
{
	long id = SYSCALL_NR(regs);
	const void *path;
	__u32 flags;
	if (id == NR_openat) {
		if (!in_scope())
			return 0;
		path = (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs);
		flags = (__u32)PT_REGS_PARM3_CORE_SYSCALL(regs);
#ifdef NR_open
	} else if (id == NR_open) {
		if (!in_scope())
			return 0;
		path = (const void *)PT_REGS_PARM1_CORE_SYSCALL(regs);
		flags = (__u32)PT_REGS_PARM2_CORE_SYSCALL(regs);
#endif
	} else if (id == NR_openat2) {
		if (!in_scope())
			return 0;
		struct open_how *how = (struct open_how *)PT_REGS_PARM3_CORE_SYSCALL(regs);
		__u64 f = 0;
		bpf_probe_read_user(&f, sizeof(f), &how->flags);
		path = (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs);
		flags = (__u32)f;
	} else {
		return 0;
	}
	emit_trace(EV_TRACE_OPEN, flags, (__s32)ret, path, 1);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(trace_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!in_scope())
		return 0;
	emit_trace(EV_TRACE_EXEC, 0, 0, BPF_CORE_READ(bprm, filename), 0);
	return 0;
}
