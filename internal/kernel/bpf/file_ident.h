/* SPDX-License-Identifier: GPL-2.0 */
/* The identities of policy paths, read by user space (kernel.Identify),
 * and the BPF LSM probe. */
#pragma once

#include "file_rules.h"

/* One record of the identify iterator: the key of one descriptor. */
struct assay_ident {
	__u32 fd;
	__u32 dev;    /* the key's dev (see assay_file_key) */
	__u64 ino;    /* the key's ino */
	__u64 magic;  /* i_sb->s_magic */
	__u32 sb_dev; /* i_sb->s_dev */
	__u16 mode;   /* i_mode */
	__u8 ok;      /* 0: no key can be made (btrfs without its types) */
	__u8 _pad;
	char fstype[16]; /* i_sb->s_type->name */
};

/* identify writes the rule key of every descriptor of the reading process
 * (the iterator runs in the context of whoever reads it): user space holds
 * an O_PATH|O_NOFOLLOW descriptor of each policy path while it reads, so
 * the keys come from the very inodes the paths resolved to, made by the
 * same inode_key as the hooks, never from stat(2). */
SEC("iter/task_file")
int identify(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	if (task->tgid != (__u32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	struct inode *inode = file->f_inode;
	if (!inode)
		return 0;
	struct assay_ident r = {};
	struct assay_file_key key = {};
	r.fd = ctx->fd;
	r.ok = inode_key(inode, &key);
	r.dev = key.dev;
	r.ino = key.ino;
	struct super_block *sb = inode->i_sb;
	r.magic = sb->s_magic;
	r.sb_dev = sb->s_dev;
	r.mode = inode->i_mode;
	bpf_probe_read_kernel_str(r.fstype, sizeof(r.fstype), BPF_CORE_READ(sb, s_type, name));
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/* The BPF LSM probe: loaded and attached for a moment to learn whether this
 * kernel runs BPF LSM programs at all. It never denies. */
SEC("lsm/file_open")
int BPF_PROG(lsm_probe, struct file *file, int ret)
{
	return ret;
}
