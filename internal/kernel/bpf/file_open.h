/* SPDX-License-Identifier: GPL-2.0 */
/* Opening, executing and mapping for execution (file_rules.h decides):
 * an open asks for r when it reads and w when it writes (O_TRUNC is a
 * setattr: file_change.h), an exec asks for x, and so does mapping a file
 * executable, also through a descriptor obtained before the monitor
 * started or passed in from outside. */
#pragma once

#include "file_rules.h"

SEC("lsm/file_open")
int BPF_PROG(file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	if (!in_scope())
		return 0;
	/* execve opens with __FMODE_EXEC in f_flags (f_mode gets FMODE_EXEC
	 * later, or never, depending on the kernel version). */
	if ((file->f_flags & __FMODE_EXEC) || (file->f_mode & FMODE_EXEC))
		return file_decide(file, ACC_X, FILE_OP_EXEC);
	__u32 want = 0;
	if (file->f_mode & FMODE_READ)
		want |= ACC_R;
	if (file->f_mode & FMODE_WRITE)
		want |= ACC_W;
	return file_decide(file, want, FILE_OP_OPEN);
}

SEC("lsm/mmap_file")
int BPF_PROG(mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!file || !(prot & PROT_EXEC))
		return 0;
	if (!in_scope())
		return 0;
	return file_decide(file, ACC_X, FILE_OP_MMAP);
}

SEC("lsm/file_mprotect")
int BPF_PROG(file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot, int ret)
{
	if (ret)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	struct file *file = vma->vm_file;
	if (!file)
		return 0;
	if (!in_scope())
		return 0;
	return file_decide(file, ACC_X, FILE_OP_MMAP);
}
