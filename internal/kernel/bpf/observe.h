/* SPDX-License-Identifier: GPL-2.0 */
/* `assay learn` where BPF LSM works: file accesses observed in the LSM
 * hooks, named from the object the kernel is operating on - the opened
 * file's own path (file->f_path), the mapped file's, and for a change
 * the path of the directory the kernel resolved (struct path) with the
 * dentry it is about to change - never from the syscall's argument, which
 * a racing thread can rewrite. These programs only report (they return
 * the verdict of the programs before them unchanged) and are loaded only
 * by `assay learn`: nothing else pays for them. Records go to the trace
 * ring (assay_trace_event):
 *   file_open      EV_TRACE_OPEN, flags as the trace path reports them
 *                  (f_flags, O_CREAT when this open created the file,
 *                  O_DIRECTORY for a directory, __FMODE_EXEC (0x20) for
 *                  the kernel's opens for execution: the program and its
 *                  ELF interpreter);
 *   mmap_file,     EV_TRACE_FILEOP with FILE_OP_MMAP: a file mapped (or
 *   file_mprotect  made) executable;
 *   path_*         EV_TRACE_FILEOP with the FILE_OP_* of the change
 *                  (FILEOP_TARGET on the new name of a rename or link):
 *                  unlink, rmdir, mkdir, mknod (also a file created by
 *                  open), symlink, link, rename, truncate (truncate,
 *                  ftruncate, O_TRUNC; ftruncate is file_truncate's
 *                  since Linux 6.2), chmod, chown.
 * The hooks run before the operation: one the kernel then refuses for
 * another reason (permissions, a full disk) is reported all the same.
 * With OBSERVE_LSM set the trace path reports neither opens nor changes
 * (trace_change.h); executions (sched_process_exec) and Unix connects
 * stay there. */
#pragma once

#include "trace.h"
#include "trace_change.h"
#include "file_rules.h"

#define FMODE_CREATED_FLAG (1U << 20)

/* observe_dentry reports op on dentry d of mount vm. */
static __always_inline void observe_dentry(struct dentry *d, struct vfsmount *vm, __u32 op)
{
	if (!in_scope_btf())
		return;
	struct assay_trace_event *e = trace_reserve(EV_TRACE_FILEOP, op, 0);
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

static __always_inline void observe_in(const struct path *dir, struct dentry *d, __u32 op)
{
	observe_dentry(d, BPF_CORE_READ(dir, mnt), op);
}

SEC("lsm/file_open")
int BPF_PROG(observe_open, struct file *file, int ret)
{
	if (ret || !in_scope_btf())
		return ret;
	__u32 flags = BPF_CORE_READ(file, f_flags) & ~O_CREAT_FLAG;
	__u32 mode = BPF_CORE_READ(file, f_mode);
	if (mode & FMODE_CREATED_FLAG)
		flags |= O_CREAT_FLAG;
	if (mode & FMODE_EXEC)
		flags |= __FMODE_EXEC;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT_BITS) == S_IFDIR_BITS)
		flags |= O_DIRECTORY_FLAG;
	struct assay_trace_event *e = trace_reserve(EV_TRACE_OPEN, flags, 0);
	if (!e)
		return 0;
	__u16 src = TRACE_SRC_ARG;
	int n = file_path(file, e->path, &src);
	if (n < 0) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	e->source = src;
	e->path_len = n;
	trace_submit(e);
	return 0;
}

static __always_inline void observe_file(struct file *file, __u32 op)
{
	if (!file)
		return;
	observe_dentry(BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt), op);
}

SEC("lsm/mmap_file")
int BPF_PROG(observe_mmap, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags, int ret)
{
	if (!ret && (prot & PROT_EXEC))
		observe_file(file, FILE_OP_MMAP);
	return ret;
}

SEC("lsm/file_mprotect")
int BPF_PROG(observe_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot, int ret)
{
	if (!ret && (prot & PROT_EXEC))
		observe_file(BPF_CORE_READ(vma, vm_file), FILE_OP_MMAP);
	return ret;
}

SEC("lsm/path_unlink")
int BPF_PROG(observe_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (!ret)
		observe_in(dir, dentry, FILE_OP_UNLINK);
	return ret;
}

SEC("lsm/path_rmdir")
int BPF_PROG(observe_rmdir, const struct path *dir, struct dentry *dentry, int ret)
{
	if (!ret)
		observe_in(dir, dentry, FILE_OP_RMDIR);
	return ret;
}

SEC("lsm/path_mkdir")
int BPF_PROG(observe_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (!ret)
		observe_in(dir, dentry, FILE_OP_MKDIR);
	return ret;
}

SEC("lsm/path_mknod")
int BPF_PROG(observe_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev, int ret)
{
	if (!ret)
		observe_in(dir, dentry, FILE_OP_MKNOD);
	return ret;
}

SEC("lsm/path_symlink")
int BPF_PROG(observe_symlink, const struct path *dir, struct dentry *dentry, const char *old_name, int ret)
{
	if (!ret)
		observe_in(dir, dentry, FILE_OP_SYMLINK);
	return ret;
}

/* A hard link stays on its mount: the old name is on new_dir's. */
SEC("lsm/path_link")
int BPF_PROG(observe_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	observe_in(new_dir, old_dentry, FILE_OP_LINK);
	observe_in(new_dir, new_dentry, FILE_OP_LINK | FILEOP_TARGET);
	return 0;
}

/* flags since Linux 5.19 (RENAME_EXCHANGE, ...): the loader checks the
 * hook's arguments (kernel.ObserveLSMHere). */
SEC("lsm/path_rename")
int BPF_PROG(observe_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	observe_in(old_dir, old_dentry, FILE_OP_RENAME);
	observe_in(new_dir, new_dentry, FILE_OP_RENAME | FILEOP_TARGET);
	return 0;
}

SEC("lsm/path_truncate")
int BPF_PROG(observe_truncate, const struct path *path, int ret)
{
	if (!ret)
		observe_dentry(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), FILE_OP_TRUNCATE);
	return ret;
}

SEC("lsm/path_chmod")
int BPF_PROG(observe_chmod, const struct path *path, umode_t mode, int ret)
{
	if (!ret)
		observe_dentry(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), FILE_OP_CHMOD);
	return ret;
}

SEC("lsm/path_chown")
int BPF_PROG(observe_chown, const struct path *path, __u32 uid, __u32 gid, int ret)
{
	if (!ret)
		observe_dentry(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt), FILE_OP_CHOWN);
	return ret;
}

/* ftruncate has its own hook since Linux 6.2 (before, path_truncate):
 * attached where the kernel has it (kernel.observeProgramsHere). */
SEC("lsm/file_truncate")
int BPF_PROG(observe_ftruncate, struct file *file, int ret)
{
	if (!ret)
		observe_file(file, FILE_OP_TRUNCATE);
	return ret;
}
