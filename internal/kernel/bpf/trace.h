/* SPDX-License-Identifier: GPL-2.0 */
/* The tracepoint path: observation only. It reports the files that
 * in-scope tasks open and the programs they execute; it never decides
 * anything.
 *
 * What is reported is what the kernel opened, not what was asked: at the
 * exit of a successful open the returned descriptor is looked up in the
 * task's file table (task->files->fdt->fd[fd]) and the path of that file
 * is built from its dentries and mounts (d_name up d_parent, across mount
 * points to the root of the task's mount namespace). A racing thread that
 * rewrites the path argument in user memory therefore cannot make an event
 * name another file. A failed open has no file: its event carries the
 * argument as written (read from user memory, marked TRACE_SRC_ARG).
 * Executions name bprm->file the same way.
 *
 * Covered: open, openat, openat2 and creat (x86-64), and on x86-64 the
 * 32-bit entry points (int 0x80 / compat: open, creat, openat, openat2;
 * `assay run` refuses those with seccomp). Not covered: io_uring's
 * IORING_OP_OPENAT/OPENAT2 (no syscall exit carries their descriptor), and
 * opens by other means (open_by_handle_at, which `assay run` refuses; file
 * descriptors received over Unix sockets). Left open: another thread can
 * close the descriptor and get another file under the same number in the
 * moment between the open's fd_install and this program. */
#pragma once

#include "common.h"

#define TRACE_PATH_MAX 256
/* The most path components (mount crossings included) walked. */
#define TRACE_WALK_MAX 64

/* assay_trace_event.source */
#define TRACE_SRC_ARG 0          /* the argument as written (user memory) */
#define TRACE_SRC_FILE 1         /* the opened or executed file, from the kernel */
#define TRACE_SRC_PARTIAL 0x100  /* with FILE: the leading components did not fit */
#define TRACE_SRC_UNLINKED 0x200 /* with FILE: no path reaches it (deleted, disconnected) */

#define FMODE_CREATED_BIT (1U << 20) /* the open created the file */
#define TS_COMPAT_BIT 0x0002         /* x86: a 32-bit system call is in progress */
#define O_CREAT_FLAG 0100
#define O_WRONLY_FLAG 01
#define O_TRUNC_FLAG 01000
#define S_IFMT_BITS 0170000
#define S_IFDIR_BITS 0040000

/* Per architecture: the syscall numbers of the opens reported, and where
 * the saved user registers hold the syscall number. The arguments are read
 * with bpf_tracing.h's PT_REGS_PARMn_CORE_SYSCALL (CO-RE, so the register
 * layout is the running kernel's). */
#if defined(__TARGET_ARCH_x86)
#define NR_open 2
#define NR_creat 85
#define NR_openat 257
#define NR_openat2 437
#define NR_connect 42
/* The 32-bit (ia32) entry points: arguments in bx, cx, dx. */
#define NR32_open 5
#define NR32_creat 8
#define NR32_openat 295
#define NR32_openat2 437
#define SYSCALL_NR(regs) ((regs)->orig_ax) /* a plain load: regs is a trusted BTF pointer */
#define O_DIRECTORY_FLAG 0200000
#elif defined(__TARGET_ARCH_arm64)
/* arm64 has no open(2) nor creat(2): libc calls openat(AT_FDCWD, ...). */
#define NR_openat 56
#define NR_openat2 437
#define NR_connect 203
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
#define SYSCALL_NR(regs) (((struct pt_regs___assay_arm64 *)(regs))->syscallno)
#define O_DIRECTORY_FLAG 040000
#else
#error "trace.h: unsupported architecture (add its syscall numbers)"
#endif

struct assay_trace_event {
	struct assay_event_header h;
	__u32 flags;
	__s32 ret;      /* the syscall's result: an fd, or -errno */
	__u16 path_len; /* bytes of path used, NUL excluded */
	__u16 source;   /* TRACE_SRC_*: where path comes from */
	__u16 _pad[2];
	char path[TRACE_PATH_MAX];
};

/* The path is built right to left in the first half of a per-CPU scratch
 * buffer (the second half, never written, keeps every bounded copy in the
 * map value). */
struct assay_trace_scratch {
	char buf[2 * TRACE_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct assay_trace_scratch);
} trace_scratch SEC(".maps");

struct path_walk {
	__u64 d;   /* struct dentry * */
	__u64 m;   /* struct mount * */
	__s32 off; /* start of the path built so far in the scratch buffer */
	__u32 src;
};

static long path_step(__u32 i, void *ctx)
{
	struct path_walk *w = ctx;
	struct dentry *d = (void *)w->d;
	struct mount *m = (void *)w->m;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	struct dentry *root = BPF_CORE_READ(m, mnt.mnt_root);
	if (d == root || !parent || parent == d) {
		struct mount *pm = BPF_CORE_READ(m, mnt_parent);
		if (d != root) { /* the root of no mount: unreachable */
			w->src |= TRACE_SRC_UNLINKED;
			return 1;
		}
		if (!pm || pm == m) /* the root of the namespace */
			return 1;
		w->d = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		w->m = (__u64)pm;
		return 0;
	}
	__u32 zero = 0;
	struct assay_trace_scratch *s = bpf_map_lookup_elem(&trace_scratch, &zero);
	if (!s)
		return 1;
	struct qstr q = BPF_CORE_READ(d, d_name);
	__s32 len = q.len & (TRACE_PATH_MAX - 1);
	if (len + 1 > w->off) {
		w->src |= TRACE_SRC_PARTIAL;
		return 1;
	}
	__s32 off = w->off - len;
	bpf_probe_read_kernel(&s->buf[off & (TRACE_PATH_MAX - 1)], len, q.name);
	off--;
	s->buf[off & (TRACE_PATH_MAX - 1)] = '/';
	w->off = off;
	w->d = (__u64)parent;
	return 0;
}

/* dentry_path writes the path of (d, vm) into path (NUL-terminated) and
 * returns its length, or -1. */
static __always_inline int dentry_path(struct dentry *d, struct vfsmount *vm, char *path, __u16 *src)
{
	__u32 zero = 0;
	struct assay_trace_scratch *s = bpf_map_lookup_elem(&trace_scratch, &zero);
	if (!s)
		return -1;
	struct path_walk w = {
		.d = (__u64)d,
		.m = (__u64)container_of(vm, struct mount, mnt),
		.off = TRACE_PATH_MAX - 1, /* buf[TRACE_PATH_MAX-1] is never written: the NUL */
		.src = TRACE_SRC_FILE,
	};
	if (!w.d || !vm)
		return -1;
	bpf_loop(TRACE_WALK_MAX, path_step, &w, 0);
	__s32 off = w.off;
	if (off == TRACE_PATH_MAX - 1) { /* the root itself */
		off--;
		s->buf[off & (TRACE_PATH_MAX - 1)] = '/';
	}
	off &= TRACE_PATH_MAX - 1;
	bpf_probe_read_kernel(path, TRACE_PATH_MAX, &s->buf[off]);
	*src = w.src;
	return TRACE_PATH_MAX - 1 - off;
}

/* file_path writes the path of f into path (NUL-terminated) and returns
 * its length, or -1. */
static __always_inline int file_path(struct file *f, char *path, __u16 *src)
{
	if (!f)
		return -1;
	return dentry_path(BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), path, src);
}

/* fd_file returns the file the current task holds at descriptor fd. */
static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline struct assay_trace_event *trace_reserve(__u8 kind, __u32 flags, __s32 ret)
{
	if (!event_budget(PATH_TRACEPOINT))
		return 0;
	struct assay_trace_event *e = bpf_ringbuf_reserve(&trace_events, sizeof(*e), 0);
	if (!e) {
		count(PATH_TRACEPOINT, COUNT_DROPPED);
		return 0;
	}
	fill_header(&e->h, kind, VERDICT_OBSERVED, sizeof(*e), 0);
	e->flags = flags;
	e->ret = ret;
	e->path_len = 0;
	e->source = TRACE_SRC_ARG;
	e->_pad[0] = 0;
	e->_pad[1] = 0;
	return e;
}

static __always_inline void trace_submit(struct assay_trace_event *e)
{
	bpf_ringbuf_submit(e, ringbuf_wakeup(&trace_events, sizeof(*e)));
	count(PATH_TRACEPOINT, COUNT_EMITTED);
}

/* emit_open reports an open: on success the opened file (its flags as the
 * kernel holds them, O_CREAT when this open created it, O_DIRECTORY when it
 * is a directory, O_TRUNC as asked), else the argument as written. */
static __always_inline void emit_open(long ret, const void *arg, __u32 argflags)
{
	struct file *f = ret >= 0 ? fd_file(ret) : 0;
	__u32 flags = argflags;
	if (f) {
		flags = BPF_CORE_READ(f, f_flags) | (argflags & O_TRUNC_FLAG);
		if (BPF_CORE_READ(f, f_mode) & FMODE_CREATED_BIT)
			flags |= O_CREAT_FLAG;
		if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT_BITS) == S_IFDIR_BITS)
			flags |= O_DIRECTORY_FLAG;
	}
	struct assay_trace_event *e = trace_reserve(EV_TRACE_OPEN, flags, (__s32)ret);
	if (!e)
		return;
	__u16 src = TRACE_SRC_ARG;
	int n = file_path(f, e->path, &src);
	if (n >= 0) {
		e->source = src;
	} else {
		n = bpf_probe_read_user_str(e->path, sizeof(e->path), arg);
		n = n > 0 ? n - 1 : 0;
	}
	e->path_len = n;
	trace_submit(e);
}

/* Unix-socket connects: at the exit of a successful connect(2), when the
 * socket is a Unix socket, the path of the socket file it reached, named
 * by the kernel (the peer's bound path: a stream connect's peer is the
 * listener's new socket, which holds the listener's path; a datagram
 * connect's peer is the bound socket itself). Abstract sockets have no
 * path and are not reported; neither are datagrams sent with an address
 * (sendto/sendmsg without connect). */
#define AF_UNIX_FAMILY 1
#define S_IFSOCK_BITS 0140000

static __always_inline void emit_unix_connect(long fd, long ret)
{
	if (ret != 0)
		return;
	struct file *f = fd_file(fd);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT_BITS) != S_IFSOCK_BITS)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX_FAMILY)
		return;
	struct unix_sock *peer = (struct unix_sock *)BPF_CORE_READ((struct unix_sock *)sk, peer);
	if (!peer)
		return;
	struct dentry *d = BPF_CORE_READ(peer, path.dentry);
	struct vfsmount *vm = BPF_CORE_READ(peer, path.mnt);
	if (!d || !vm)
		return; /* abstract */
	struct assay_trace_event *e = trace_reserve(EV_TRACE_UNIX, 0, 0);
	if (!e)
		return;
	__u16 src = TRACE_SRC_ARG;
	int n = dentry_path(d, vm, e->path, &src);
	if (n < 0) {
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->source = src;
	e->path_len = n;
	trace_submit(e);
}

#include "trace_change.h"

/* Opens are reported at sys_exit, from one program: by then the result is
 * known, the descriptor installed, and the saved user registers still hold
 * the syscall number and arguments. One program per syscall instead of an
 * enter/exit pair halves the cost for every task on the host. It runs for
 * every syscall of every task: the syscall number is tested first, the
 * scope (cgroup ancestry) only for the opens. */
SEC("tp_btf/sys_exit")
int BPF_PROG(trace_sys_exit, struct pt_regs *regs, long ret)
{
	long id = SYSCALL_NR(regs);
	const void *path;
	__u32 flags;
	/* `assay learn` only (a load-time constant: otherwise the verifier
	 * drops this branch): changes, and opens when the LSM observes. */
	if (scope_config.observe && observe_sys_exit(regs, id, ret))
		return 0;
#if defined(__TARGET_ARCH_x86)
	/* Most system calls are none of these: leave before anything else. */
	if (id != NR_openat && id != NR_open && id != NR_creat && id != NR_openat2 && id != NR32_open &&
	    id != NR32_creat && id != NR32_openat && id != NR_connect)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	if (t->thread_info.status & TS_COMPAT_BIT) {
		if (id == NR32_open || id == NR32_creat) {
			path = (const void *)(unsigned long)(__u32)BPF_CORE_READ(regs, bx);
			flags = id == NR32_creat ? (O_CREAT_FLAG | O_WRONLY_FLAG | O_TRUNC_FLAG) : (__u32)BPF_CORE_READ(regs, cx);
		} else if (id == NR32_openat) {
			path = (const void *)(unsigned long)(__u32)BPF_CORE_READ(regs, cx);
			flags = (__u32)BPF_CORE_READ(regs, dx);
		} else if (id == NR32_openat2) {
			struct open_how *how = (struct open_how *)(unsigned long)(__u32)BPF_CORE_READ(regs, dx);
			__u64 f = 0;
			bpf_probe_read_user(&f, sizeof(f), &how->flags);
			path = (const void *)(unsigned long)(__u32)BPF_CORE_READ(regs, cx);
			flags = (__u32)f;
		} else {
			return 0;
		}
		if (!in_scope_btf())
			return 0;
		emit_open(ret, path, flags);
		return 0;
	}
#endif
	if (id == NR_openat) {
		if (!in_scope_btf())
			return 0;
		path = (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs);
		flags = (__u32)PT_REGS_PARM3_CORE_SYSCALL(regs);
#ifdef NR_open
	} else if (id == NR_open) {
		if (!in_scope_btf())
			return 0;
		path = (const void *)PT_REGS_PARM1_CORE_SYSCALL(regs);
		flags = (__u32)PT_REGS_PARM2_CORE_SYSCALL(regs);
#endif
#ifdef NR_creat
	} else if (id == NR_creat) {
		if (!in_scope_btf())
			return 0;
		path = (const void *)PT_REGS_PARM1_CORE_SYSCALL(regs);
		flags = O_CREAT_FLAG | O_WRONLY_FLAG | O_TRUNC_FLAG;
#endif
	} else if (id == NR_openat2) {
		if (!in_scope_btf())
			return 0;
		struct open_how *how = (struct open_how *)PT_REGS_PARM3_CORE_SYSCALL(regs);
		__u64 f = 0;
		bpf_probe_read_user(&f, sizeof(f), &how->flags);
		path = (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs);
		flags = (__u32)f;
	} else if (id == NR_connect) {
		if (ret == 0 && in_scope_btf())
			emit_unix_connect(PT_REGS_PARM1_CORE_SYSCALL(regs), ret);
		return 0;
	} else {
		return 0;
	}
	emit_open(ret, path, flags);
	return 0;
}

/* Executions name the executed file (bprm->file), not the name asked. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(trace_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!in_scope_btf())
		return 0;
	struct assay_trace_event *e = trace_reserve(EV_TRACE_EXEC, 0, 0);
	if (!e)
		return 0;
	__u16 src = TRACE_SRC_ARG;
	int n = file_path(BPF_CORE_READ(bprm, file), e->path, &src);
	if (n >= 0) {
		e->source = src;
	} else {
		n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), BPF_CORE_READ(bprm, filename));
		n = n > 0 ? n - 1 : 0;
	}
	e->path_len = n;
	trace_submit(e);
	return 0;
}
