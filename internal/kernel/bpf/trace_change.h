/* SPDX-License-Identifier: GPL-2.0 */
/* `assay learn` on the trace path (scope_config.observe, see common.h):
 * the changes that need no open - unlink, rmdir, mkdir, mknod, rename (both
 * names), link (both names), symlink (the new name), chmod, chown,
 * truncate - reported at the exit of the successful system call as
 * EV_TRACE_FILEOP records (flags: the FILE_OP_* of the change, with
 * FILEOP_TARGET on the new name of a rename or link).
 *
 * What the kernel can name: an operation on a descriptor (fchmod, fchown,
 * ftruncate, and the *at calls with AT_EMPTY_PATH) names the file exactly,
 * from the task's file table (TRACE_SRC_FILE). An operation on a path
 * names the directory it starts from exactly - the dirfd's file, or the
 * task's working directory - but the rest of the path is the argument
 * read from user memory at syscall exit (TRACE_SRC_DIRARG; an absolute
 * argument is TRACE_SRC_ARG): the object itself is gone (unlink, rmdir,
 * the old name of a rename) or no file of the call names it, and without
 * fentry or kprobes (refused, or absent, on hosts without BPF LSM) no
 * program sees the kernel's lookup. A racing thread can therefore make
 * such a record name another path; the policy learned is reviewed, and
 * runs that need the exact object use BPF LSM (observe.h).
 *
 * The 32-bit entry points are not reported: `assay run` and `assay learn`
 * refuse them with seccomp. */
#pragma once

#include "trace.h"
#include "file_rules.h" /* FILE_OP_* */

#define FILEOP_TARGET 0x100 /* the new name of a rename or link */
#define TRACE_SRC_DIRARG 2  /* the start directory from the kernel, the rest from the argument */
#define AT_FDCWD_VAL -100
#define AT_REMOVEDIR_FLAG 0x200
#define AT_EMPTY_PATH_FLAG 0x1000

#if defined(__TARGET_ARCH_x86)
#define NR_unlink 87
#define NR_unlinkat 263
#define NR_rmdir 84
#define NR_mkdir 83
#define NR_mkdirat 258
#define NR_mknod 133
#define NR_mknodat 259
#define NR_rename 82
#define NR_renameat 264
#define NR_renameat2 316
#define NR_link 86
#define NR_linkat 265
#define NR_symlink 88
#define NR_symlinkat 266
#define NR_chmod 90
#define NR_fchmod 91
#define NR_fchmodat 268
#define NR_fchmodat2 452
#define NR_chown 92
#define NR_lchown 94
#define NR_fchown 93
#define NR_fchownat 260
#define NR_truncate 76
#define NR_ftruncate 77
#elif defined(__TARGET_ARCH_arm64)
#define NR_mknodat 33
#define NR_mkdirat 34
#define NR_unlinkat 35
#define NR_symlinkat 36
#define NR_linkat 37
#define NR_renameat 38
#define NR_truncate 45
#define NR_ftruncate 46
#define NR_fchmod 52
#define NR_fchmodat 53
#define NR_fchownat 54
#define NR_fchown 55
#define NR_renameat2 276
#define NR_fchmodat2 452
#endif

/* One change system call: the descriptor it works on (fd >= 0), or up to
 * two (start directory, path argument) pairs. */
struct change_call {
	long fd;
	long dfd[2];
	const char *arg[2];
	__u32 op;
	__u32 n;
};

#define P1 PT_REGS_PARM1_CORE_SYSCALL(regs)
#define P2 PT_REGS_PARM2_CORE_SYSCALL(regs)
#define P3 PT_REGS_PARM3_CORE_SYSCALL(regs)
#define P4 PT_REGS_PARM4_CORE_SYSCALL(regs)
#define P5 PT_REGS_PARM5_CORE_SYSCALL(regs)

/* change_call_of fills c for syscall id; 0 when id is no change. */
static __always_inline int change_call_of(long id, struct pt_regs *regs, struct change_call *c)
{
	c->fd = -1;
	c->n = 1;
	c->dfd[0] = AT_FDCWD_VAL;
	c->dfd[1] = AT_FDCWD_VAL;
	switch (id) {
#if defined(__TARGET_ARCH_x86)
	case NR_unlink:
		c->op = FILE_OP_UNLINK;
		c->arg[0] = (const char *)P1;
		return 1;
	case NR_rmdir:
		c->op = FILE_OP_RMDIR;
		c->arg[0] = (const char *)P1;
		return 1;
	case NR_mkdir:
		c->op = FILE_OP_MKDIR;
		c->arg[0] = (const char *)P1;
		return 1;
	case NR_mknod:
		c->op = FILE_OP_MKNOD;
		c->arg[0] = (const char *)P1;
		return 1;
	case NR_rename:
	case NR_link:
		c->op = id == NR_rename ? FILE_OP_RENAME : FILE_OP_LINK;
		c->arg[0] = (const char *)P1;
		c->arg[1] = (const char *)P2;
		c->n = 2;
		return 1;
	case NR_symlink:
		c->op = FILE_OP_SYMLINK;
		c->arg[0] = (const char *)P2;
		return 1;
	case NR_chmod:
	case NR_chown:
	case NR_lchown:
	case NR_truncate:
		c->op = id == NR_chmod ? FILE_OP_CHMOD : id == NR_truncate ? FILE_OP_TRUNCATE : FILE_OP_CHOWN;
		c->arg[0] = (const char *)P1;
		return 1;
#else
	case NR_truncate:
		c->op = FILE_OP_TRUNCATE;
		c->arg[0] = (const char *)P1;
		return 1;
#endif
	case NR_unlinkat:
		c->op = (P3 & AT_REMOVEDIR_FLAG) ? FILE_OP_RMDIR : FILE_OP_UNLINK;
		c->dfd[0] = (int)P1;
		c->arg[0] = (const char *)P2;
		return 1;
	case NR_mkdirat:
	case NR_mknodat:
		c->op = id == NR_mkdirat ? FILE_OP_MKDIR : FILE_OP_MKNOD;
		c->dfd[0] = (int)P1;
		c->arg[0] = (const char *)P2;
		return 1;
	case NR_renameat:
	case NR_renameat2:
	case NR_linkat:
		c->op = id == NR_linkat ? FILE_OP_LINK : FILE_OP_RENAME;
		c->dfd[0] = (int)P1;
		c->arg[0] = (const char *)P2;
		c->dfd[1] = (int)P3;
		c->arg[1] = (const char *)P4;
		c->n = 2;
		return 1;
	case NR_symlinkat:
		c->op = FILE_OP_SYMLINK;
		c->dfd[0] = (int)P2;
		c->arg[0] = (const char *)P3;
		return 1;
	case NR_fchmodat:
	case NR_fchmodat2:
	case NR_fchownat:
		c->op = id == NR_fchownat ? FILE_OP_CHOWN : FILE_OP_CHMOD;
		c->dfd[0] = (int)P1;
		c->arg[0] = (const char *)P2;
		return 1;
	case NR_fchmod:
	case NR_fchown:
	case NR_ftruncate:
		c->op = id == NR_fchmod ? FILE_OP_CHMOD : id == NR_ftruncate ? FILE_OP_TRUNCATE : FILE_OP_CHOWN;
		c->fd = (int)P1;
		return 1;
	}
	return 0;
}

/* emit_change_at reports op on arg, relative to directory dfd (or the
 * working directory): see the header comment for the path's source. */
static __always_inline void emit_change_at(long dfd, const char *arg, __u32 op)
{
	struct assay_trace_event *e = trace_reserve(EV_TRACE_FILEOP, op, 0);
	if (!e)
		return;
	char first = 0;
	bpf_probe_read_user(&first, 1, arg);
	if (first == '/') {
		int m = bpf_probe_read_user_str(e->path, sizeof(e->path), arg);
		e->path_len = m > 0 ? m - 1 : 0;
		trace_submit(e);
		return;
	}
	struct dentry *d;
	struct vfsmount *vm;
	if (dfd == AT_FDCWD_VAL) {
		struct task_struct *t = bpf_get_current_task_btf();
		d = BPF_CORE_READ(t, fs, pwd.dentry);
		vm = BPF_CORE_READ(t, fs, pwd.mnt);
	} else {
		struct file *f = fd_file(dfd);
		if (!f)
			goto discard;
		d = BPF_CORE_READ(f, f_path.dentry);
		vm = BPF_CORE_READ(f, f_path.mnt);
	}
	__u16 src = TRACE_SRC_ARG;
	int n = dentry_path(d, vm, e->path, &src);
	if (n < 0)
		goto discard;
	if (first == 0) { /* AT_EMPTY_PATH: the descriptor's own file */
		e->source = src;
		e->path_len = n;
		trace_submit(e);
		return;
	}
	__u32 zero = 0;
	struct assay_trace_scratch *s = bpf_map_lookup_elem(&trace_scratch, &zero);
	if (!s || n > TRACE_PATH_MAX - 3 || src != TRACE_SRC_FILE) {
		e->source = src | TRACE_SRC_PARTIAL;
		e->path_len = n;
		trace_submit(e);
		return;
	}
	/* The directory, a slash (none after "/"), the argument: composed in
	 * the scratch buffer, whose second half takes any argument. */
	bpf_probe_read_kernel(s->buf, TRACE_PATH_MAX, e->path);
	__u32 off = n == 1 ? 0 : n;
	off &= TRACE_PATH_MAX - 1;
	s->buf[off] = '/';
	off++;
	int m = bpf_probe_read_user_str(&s->buf[off & (TRACE_PATH_MAX - 1)], TRACE_PATH_MAX, arg);
	if (m < 1)
		goto discard;
	__u32 total = off + m - 1;
	e->source = TRACE_SRC_DIRARG;
	if (total > TRACE_PATH_MAX - 1) {
		total = TRACE_PATH_MAX - 1;
		e->source |= TRACE_SRC_PARTIAL;
	}
	bpf_probe_read_kernel(e->path, TRACE_PATH_MAX, s->buf);
	e->path[TRACE_PATH_MAX - 1] = 0;
	e->path_len = total;
	trace_submit(e);
	return;
discard:
	bpf_ringbuf_discard(e, 0);
}

/* emit_change_fd reports op on the file at descriptor fd (exact). */
static __always_inline void emit_change_fd(long fd, __u32 op)
{
	struct file *f = fd_file(fd);
	if (!f)
		return;
	struct assay_trace_event *e = trace_reserve(EV_TRACE_FILEOP, op, 0);
	if (!e)
		return;
	__u16 src = TRACE_SRC_ARG;
	int n = file_path(f, e->path, &src);
	if (n < 0) {
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->source = src;
	e->path_len = n;
	trace_submit(e);
}

/* observe_sys_exit handles syscall id for `assay learn`; it returns 1 when
 * the trace path has nothing more to do with it: a change (reported here,
 * or by the LSM observe programs), or, when those observe, an open. */
static __always_inline int observe_sys_exit(struct pt_regs *regs, long id, long ret)
{
	if (scope_config.observe & OBSERVE_LSM) {
		/* observe.h reports opens and changes from the LSM hooks;
		 * Unix connects are still this path's. */
		return id != NR_connect;
	}
	struct change_call c = {};
	if (!change_call_of(id, regs, &c))
		return 0;
	if (ret != 0 || !in_scope_btf())
		return 1;
	if (c.fd >= 0) {
		emit_change_fd(c.fd, c.op);
		return 1;
	}
	emit_change_at(c.dfd[0], c.arg[0], c.op);
	if (c.n == 2)
		emit_change_at(c.dfd[1], c.arg[1], c.op | FILEOP_TARGET);
	return 1;
}
