/* SPDX-License-Identifier: GPL-2.0 */
/* Changes without open (file_rules.h decides): a change asks for w on its
 * target (the file or directory changed, whose own rule, else its nearest
 * ancestor's, decides), and creating, removing or moving a name asks for w
 * on the directory too. A name being created has no inode yet: its
 * directory's rule decides. So a file or directory whose rule allows no w
 * (a version 1 rule, a deny, an r or rx rule), and everything under it,
 * can be neither changed nor removed, nothing can be created in or moved
 * into it, and it cannot be given a new name elsewhere (link, rename). */
#pragma once

#include "file_rules.h"

/* change_rule returns the rule refusing a change to dentry d (0: none):
 * w on d's rule, and, when dir is set (its name is created, removed or
 * moved), w on its directory's rule. The directory is only looked up apart
 * when d has its own rule; otherwise that rule is the directory's. */
static __always_inline __u32 change_rule(const struct assay_settings *s, void *rules, __u32 gen, struct dentry *d,
					 int dir)
{
	int own;
	struct file_dec r = nearest(s, rules, gen, d, 0, &own);
	__u32 id = refusal(s, r, ACC_W, d->d_sb);
	if (id || !dir || !own)
		return id;
	struct file_dec pr = {};
	if (s->has_dir_rules)
		pr = ancestor_rule(gen, d, 0);
	return refusal(s, pr, ACC_W, d->d_sb);
}

/* change_hook judges operation op on dentry d (dir: see change_rule);
 * report is the inode the event names (the directory for a name being
 * created). */
static __always_inline int change_hook(struct dentry *d, int dir, struct inode *report, __u8 op)
{
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM;
	return file_verdict(s, change_rule(s, rules, gen, d, dir), report, op);
}

/* A hard link gives old_dentry's file a new name: w on the file (as for
 * any change: a file one may not change must not get a name where one
 * may) and on the new name's directory. */
SEC("lsm/inode_link")
int BPF_PROG(inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM;
	__u32 rule = change_rule(s, rules, gen, old_dentry, 0);
	if (!rule)
		rule = change_rule(s, rules, gen, new_dentry, 1);
	return file_verdict(s, rule, old_dentry->d_inode, FILE_OP_LINK);
}

/* A rename removes the old name and creates (or replaces) the new one. */
SEC("lsm/inode_rename")
int BPF_PROG(inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM;
	__u32 rule = change_rule(s, rules, gen, old_dentry, 1);
	if (!rule)
		rule = change_rule(s, rules, gen, new_dentry, 1);
	return file_verdict(s, rule, old_dentry->d_inode, FILE_OP_RENAME);
}

SEC("lsm/inode_unlink")
int BPF_PROG(inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 1, dentry->d_inode, FILE_OP_UNLINK);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 1, dentry->d_inode, FILE_OP_RMDIR);
}

SEC("lsm/inode_create")
int BPF_PROG(inode_create, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 1, dir, FILE_OP_CREATE);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 1, dir, FILE_OP_MKDIR);
}

SEC("lsm/inode_mknod")
int BPF_PROG(inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 1, dir, FILE_OP_MKNOD);
}

SEC("lsm/inode_symlink")
int BPF_PROG(inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 1, dir, FILE_OP_SYMLINK);
}

/* setattr_op names what a setattr changes: truncate(2), O_TRUNC and
 * ftruncate (ATTR_SIZE), chmod, chown, utimes. */
static __always_inline __u8 setattr_op(struct iattr *attr)
{
	unsigned int v = attr->ia_valid;
	if (v & ATTR_SIZE)
		return FILE_OP_TRUNCATE;
	if (v & ATTR_MODE)
		return FILE_OP_CHMOD;
	if (v & (ATTR_UID | ATTR_GID))
		return FILE_OP_CHOWN;
	if (v & (ATTR_ATIME | ATTR_MTIME | ATTR_ATIME_SET | ATTR_MTIME_SET))
		return FILE_OP_UTIMES;
	return FILE_OP_SETATTR;
}

/* inode_setattr gained a leading idmap argument in Linux 6.9: the loader
 * attaches the variant whose arguments match the running kernel's hook
 * (kernel/hooks.go). */
SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 0, dentry->d_inode, setattr_op(attr));
}

SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr_idmap, void *idmap, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 0, dentry->d_inode, setattr_op(attr));
}

/* The first argument is a user namespace before 6.3, an idmap after: the
 * dentry is second in both. */
SEC("lsm/inode_setxattr")
int BPF_PROG(inode_setxattr, void *ns, struct dentry *dentry, const char *name, const void *value, size_t size,
	     int flags, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 0, dentry->d_inode, FILE_OP_SETXATTR);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(inode_removexattr, void *ns, struct dentry *dentry, const char *name, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 0, dentry->d_inode, FILE_OP_REMOVEXATTR);
}

/* POSIX ACLs have their own hooks since 6.2 (before, they were xattrs):
 * attached where the kernel has them. */
SEC("lsm/inode_set_acl")
int BPF_PROG(inode_set_acl, void *idmap, struct dentry *dentry, const char *acl_name, void *kacl, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 0, dentry->d_inode, FILE_OP_SETXATTR);
}

SEC("lsm/inode_remove_acl")
int BPF_PROG(inode_remove_acl, void *idmap, struct dentry *dentry, const char *acl_name, int ret)
{
	if (ret)
		return ret;
	return change_hook(dentry, 0, dentry->d_inode, FILE_OP_REMOVEXATTR);
}
