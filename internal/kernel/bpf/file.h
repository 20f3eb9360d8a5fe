/* SPDX-License-Identifier: GPL-2.0 */
/* File prevention: BPF LSM on file_open, plus inode_link and inode_rename
 * so that a sandboxed process cannot give a protected file a new name
 * outside a denied directory.
 *
 * A rule is an inode, keyed by inode_key (below). A file is denied when its own
 * inode is a rule, or when any ancestor directory is one. The walk follows
 * d_parent to the root of the file's filesystem (so a bind mount of a part
 * of a denied tree is still inside it), then crosses to the mount point in
 * the parent mount and goes on (so a filesystem mounted inside a denied
 * directory is inside it too). */
#pragma once

#include "common.h"

#define MAX_WALK 128

/* What a file event refused (the event's op=; internal/events FileOp). */
#define FILE_OP_OPEN 1
#define FILE_OP_LINK 2
#define FILE_OP_RENAME 3
#define FILE_OP_UNLINK 4
#define FILE_OP_RMDIR 5
#define FILE_OP_CREATE 6
#define FILE_OP_MKDIR 7
#define FILE_OP_MKNOD 8
#define FILE_OP_SYMLINK 9
#define FILE_OP_TRUNCATE 10
#define FILE_OP_CHMOD 11
#define FILE_OP_CHOWN 12
#define FILE_OP_UTIMES 13
#define FILE_OP_SETATTR 14
#define FILE_OP_SETXATTR 15
#define FILE_OP_REMOVEXATTR 16
#define FILE_OP_EXEC 17
#define FILE_OP_MMAP 18
#define FILE_OP_CONNECT 19
#define FILE_OP_SEND 20

/* include/linux/fs.h, stable across versions */
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 0x20 /* the same bit, in f_flags */
#define ATTR_MODE 1
#define ATTR_UID 2
#define ATTR_GID 4
#define ATTR_SIZE 8
#define ATTR_ATIME 16
#define ATTR_MTIME 32
#define ATTR_ATIME_SET 128
#define ATTR_MTIME_SET 256
#define PROT_EXEC 4

/* Magic numbers of the filesystems that need care (include/uapi/linux/magic.h). */
#define BTRFS_SUPER_MAGIC 0x9123683EUL

/* dentry->d_flags: a dentry obtained from a file handle (open_by_handle_at,
 * NFS export) that is not connected to its parent directory. 0x20 in every
 * kernel since 2.6 (a #define before 6.15, enum dentry_flags after). */
#define DCACHE_DISCONNECTED 0x20

/* The key of a file rule: the identity of an inode as the kernel sees it.
 *   dev: the super block's device in the kernel's encoding
 *        (inode->i_sb->s_dev = major << 20 | minor), except on btrfs, where
 *        it is the anonymous device of the inode's subvolume
 *        (BTRFS_I(inode)->root->anon_dev): inode numbers are per subvolume
 *        there, so the super block's device alone would make a rule on
 *        one subvolume's inode 257 match every subvolume's inode 257.
 *   ino: inode->i_ino.
 * User space never computes a key: it holds an O_PATH descriptor of each
 * policy path and reads the key back through the `identify` iterator below,
 * which uses the same inode_key as the hooks. */
struct assay_file_key {
	__u32 dev;
	__u32 _pad;
	__u64 ino;
};

struct assay_file_event {
	struct assay_event_header h;
	__u32 dev;
	__u8 op;
	__u8 _pad[3];
	__u64 ino;
};

/* (dev, ino) -> rule id, one map per policy generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct assay_file_key);
		__type(value, __u32);
	});
} file_rules SEC(".maps");

/* The parts of btrfs's inode that the key needs. btrfs is often a module:
 * these types are relocated against its BTF when it is loaded, and the
 * code using them is dropped when it is not (no btrfs inode can exist then;
 * a btrfs module loaded later is caught in user space: see identify). */
struct btrfs_root___assay {
	dev_t anon_dev;
} __attribute__((preserve_access_index));

struct btrfs_inode___assay {
	struct btrfs_root___assay *root;
	struct inode vfs_inode;
} __attribute__((preserve_access_index));

/* btrfs_subvol_dev returns the anonymous device of a btrfs inode's
 * subvolume, or 0 when btrfs's types are unknown. */
static __always_inline __u32 btrfs_subvol_dev(struct inode *inode)
{
	if (!bpf_core_type_exists(struct btrfs_inode___assay))
		return 0;
	struct btrfs_inode___assay *bi =
		(void *)((char *)inode - bpf_core_field_offset(struct btrfs_inode___assay, vfs_inode));
	struct btrfs_root___assay *root = BPF_CORE_READ(bi, root);
	if (!root)
		return 0;
	return BPF_CORE_READ(root, anon_dev);
}

/* inode_key fills the rule key of inode, a BTF pointer (a hook argument or
 * loaded from one): its fields are read with direct loads (the hot path),
 * btrfs's with bpf_probe_read. Returns 0 when the key could not be made
 * (btrfs without its types). */
static __always_inline int inode_key(struct inode *inode, struct assay_file_key *key)
{
	struct super_block *sb = inode->i_sb;
	key->dev = sb->s_dev;
	key->_pad = 0;
	key->ino = inode->i_ino;
	if (sb->s_magic == BTRFS_SUPER_MAGIC) {
		key->dev = btrfs_subvol_dev(inode);
		return key->dev != 0;
	}
	return 1;
}

/* The same for an inode pointer read with bpf_probe_read (not BTF). */
static __always_inline int inode_key_read(struct inode *inode, struct assay_file_key *key)
{
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	key->dev = BPF_CORE_READ(sb, s_dev);
	key->_pad = 0;
	key->ino = BPF_CORE_READ(inode, i_ino);
	if (BPF_CORE_READ(sb, s_magic) == BTRFS_SUPER_MAGIC) {
		key->dev = btrfs_subvol_dev(inode);
		return key->dev != 0;
	}
	return 1;
}

/* inode_rule looks an inode (a BTF pointer) up in the rules: its rule id,
 * or 0. This and ancestor_rule are the whole rule lookup; a key that cannot
 * be made matches nothing (user space refuses rules on such inodes). */
static __always_inline __u32 inode_rule(void *rules, struct inode *inode)
{
	struct assay_file_key key;
	if (!inode_key(inode, &key))
		return 0;
	__u32 *id = bpf_map_lookup_elem(rules, &key);
	return id ? *id : 0;
}

/* The same for an inode pointer read with bpf_probe_read (not BTF). */
static __always_inline __u32 inode_rule_read(void *rules, struct inode *inode)
{
	struct assay_file_key key;
	if (!inode_key_read(inode, &key))
		return 0;
	__u32 *id = bpf_map_lookup_elem(rules, &key);
	return id ? *id : 0;
}

/* disconnected reports whether d, a dentry that is its own parent, is a
 * disconnected dentry (one open_by_handle_at made for a file whose path
 * left the dentry cache) rather than the root of its filesystem or of the
 * mount m (NULL when the hook has no mount). A walk ending there has not
 * seen the file's real ancestors. */
static __always_inline int disconnected(struct dentry *d, struct mount *m)
{
	if (!(BPF_CORE_READ(d, d_flags) & DCACHE_DISCONNECTED))
		return 0;
	if (BPF_CORE_READ(d, d_sb, s_root) == d)
		return 0;
	if (m && BPF_CORE_READ(m, mnt.mnt_root) == d)
		return 0;
	return 1;
}

/* The ancestor walk. It runs as a bpf_loop callback, so the verifier checks
 * one step once instead of MAX_WALK unrolled steps in every hook (with
 * fifteen hooks, verifying unrolled walks made start-up take minutes under
 * emulation); its pointers are read with bpf_probe_read. */
struct walk_state {
	__u64 cur; /* struct dentry *: the last dentry judged */
	__u64 m;   /* struct mount * of cur, 0 when the hook has no mount */
	__u32 gen; /* the policy generation of the decision */
	__u32 rule;
	__u32 done; /* the walk ended; rule says how */
	__u32 _pad;
};

/* walk_step moves one step up: to the parent dentry, or at the root of a
 * filesystem across to the mount point in the parent mount (so that a
 * filesystem mounted inside a denied directory is inside it), and looks the
 * new dentry's inode up. Going up d_parent first, to the root of the
 * file's filesystem, makes a bind mount of part of a denied tree still
 * inside it. */
static long walk_step(__u32 i, void *ctx)
{
	struct walk_state *w = ctx;
	struct dentry *cur = (void *)w->cur;
	struct dentry *parent = BPF_CORE_READ(cur, d_parent);
	if (!parent) {
		w->done = 1;
		return 1;
	}
	if (parent == cur) {
		struct mount *m = (void *)w->m;
		if (disconnected(cur, m)) {
			w->rule = RULE_DISCONNECTED;
			w->done = 1;
			return 1;
		}
		struct mount *pm = m ? BPF_CORE_READ(m, mnt_parent) : 0;
		if (!pm || pm == m) {
			w->done = 1;
			return 1;
		}
		cur = BPF_CORE_READ(m, mnt_mountpoint);
		w->m = (__u64)pm;
	} else {
		cur = parent;
	}
	w->cur = (__u64)cur;
	struct inode *inode = BPF_CORE_READ(cur, d_inode);
	if (!inode)
		return 0;
	__u32 gen = w->gen;
	void *rules = bpf_map_lookup_elem(&file_rules, &gen);
	if (!rules) {
		w->rule = RULE_TOO_DEEP; /* fail closed */
		w->done = 1;
		return 1;
	}
	__u32 rule = inode_rule_read(rules, inode);
	if (rule) {
		w->rule = rule;
		w->done = 1;
		return 1;
	}
	return 0;
}

/* ancestor_rule walks from dentry d (in mount m, NULL when the hook has no
 * mount: the walk then ends at the root of d's filesystem) towards the
 * root, in policy generation gen. Returns the first matching rule id,
 * RULE_TOO_DEEP when the walk did not end within MAX_WALK steps (fail
 * closed: a deeper nest must not escape a directory rule),
 * RULE_DISCONNECTED when it ended at a disconnected dentry (fail closed:
 * its real ancestors are unknown), or 0. */
static __always_inline __u32 ancestor_rule(__u32 gen, struct dentry *d, struct mount *m)
{
	struct walk_state w = {.cur = (__u64)d, .m = (__u64)m, .gen = gen};
	bpf_loop(MAX_WALK, walk_step, &w, 0);
	if (!w.done)
		return RULE_TOO_DEEP;
	return w.rule;
}

static __always_inline __u32 dentry_rule(const struct assay_settings *s, void *rules, __u32 gen, struct dentry *d,
					 struct mount *m)
{
	struct inode *inode = d->d_inode;
	__u32 rule = 0;
	if (inode)
		rule = inode_rule(rules, inode);
	if (!rule && s->has_dir_rules)
		rule = ancestor_rule(gen, d, m);
	return rule;
}

/* file_policy finds the active generation's settings and file rules.
 * Returns 0 when they cannot be found: callers then fail closed. */
static __always_inline int file_policy(struct assay_settings **s, void **rules, __u32 *gen)
{
	int g = policy_gen();
	if (g < 0)
		return 0;
	*gen = g;
	*s = get_settings(*gen);
	*rules = bpf_map_lookup_elem(&file_rules, gen);
	return *s && *rules;
}

/* aggregate_file counts a file event that was not emitted (see aggregate). */
static __always_inline void aggregate_file(__u8 verdict, __u32 rule, struct inode *inode, __u8 op, int dropped)
{
	struct assay_agg_key k;
	__builtin_memset(&k, 0, sizeof(k));
	k.cgroup_id = bpf_get_current_cgroup_id();
	k.rule_id = rule;
	k.kind = EV_FILE;
	k.verdict = verdict;
	k.op = op;
	k.dev = inode ? BPF_CORE_READ(inode, i_sb, s_dev) : 0;
	k.ino = inode ? BPF_CORE_READ(inode, i_ino) : 0;
	aggregate(PATH_LSM, &k, dropped);
}

static __always_inline int file_verdict(const struct assay_settings *s, __u32 rule, struct inode *inode, __u8 op)
{
	if (!rule)
		return 0;
	__u8 v = s->audit ? VERDICT_AUDIT : VERDICT_BLOCKED;
	if (!event_budget(PATH_LSM)) {
		aggregate_file(v, rule, inode, op, 0);
		return s->audit ? 0 : -EPERM;
	}
	struct assay_file_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		fill_header(&e->h, EV_FILE, v, sizeof(*e), rule);
		struct assay_file_key key = {};
		if (inode)
			inode_key_read(inode, &key);
		e->dev = key.dev;
		e->ino = key.ino;
		e->op = op;
		e->_pad[0] = 0;
		e->_pad[1] = 0;
		e->_pad[2] = 0;
		bpf_ringbuf_submit(e, 0);
		count(PATH_LSM, COUNT_EMITTED);
	} else {
		count(PATH_LSM, COUNT_DROPPED);
		aggregate_file(v, rule, inode, op, 1);
	}
	return s->audit ? 0 : -EPERM;
}

SEC("lsm/file_open")
int BPF_PROG(file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM; /* fail closed */
	struct dentry *d = file->f_path.dentry;
	struct vfsmount *vm = BPF_CORE_READ(file, f_path.mnt);
	struct mount *m = container_of(vm, struct mount, mnt);
	struct inode *inode = file->f_inode;
	__u32 rule = inode ? inode_rule(rules, inode) : 0;
	if (!rule && s->has_dir_rules)
		rule = ancestor_rule(gen, d, m);
	/* execve opens with __FMODE_EXEC in f_flags (f_mode gets FMODE_EXEC
	 * later, or never, depending on the kernel version). */
	int exec = (file->f_flags & __FMODE_EXEC) || (file->f_mode & FMODE_EXEC);
	return file_verdict(s, rule, inode, exec ? FILE_OP_EXEC : FILE_OP_OPEN);
}

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
	__u32 rule = dentry_rule(s, rules, gen, old_dentry, 0);
	if (!rule)
		rule = dentry_rule(s, rules, gen, new_dentry, 0);
	return file_verdict(s, rule, old_dentry->d_inode, FILE_OP_LINK);
}

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
	__u32 rule = dentry_rule(s, rules, gen, old_dentry, 0);
	if (!rule)
		rule = dentry_rule(s, rules, gen, new_dentry, 0);
	return file_verdict(s, rule, old_dentry->d_inode, FILE_OP_RENAME);
}

/* ---- Deny means untouchable: every hook below refuses, for an in-scope
 * task, an operation on a denied inode or on a name inside a denied
 * directory (dentry_rule: the dentry's own inode, then its ancestors up to
 * its filesystem's root). A name being created has no inode yet: its
 * ancestors (the directory it is made in, and up) decide. */

/* dentry_hook judges operation op on dentry d; report is the inode the
 * event names (the directory for a name being created). */
static __always_inline int dentry_hook(struct dentry *d, struct inode *report, __u8 op)
{
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM;
	__u32 rule = dentry_rule(s, rules, gen, d, 0);
	return file_verdict(s, rule, report, op);
}

SEC("lsm/inode_unlink")
int BPF_PROG(inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, FILE_OP_UNLINK);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, FILE_OP_RMDIR);
}

SEC("lsm/inode_create")
int BPF_PROG(inode_create, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dir, FILE_OP_CREATE);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dir, FILE_OP_MKDIR);
}

SEC("lsm/inode_mknod")
int BPF_PROG(inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dir, FILE_OP_MKNOD);
}

SEC("lsm/inode_symlink")
int BPF_PROG(inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dir, FILE_OP_SYMLINK);
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
	return dentry_hook(dentry, dentry->d_inode, setattr_op(attr));
}

SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr_idmap, void *idmap, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, setattr_op(attr));
}

/* The first argument is a user namespace before 6.3, an idmap after: the
 * dentry is second in both. */
SEC("lsm/inode_setxattr")
int BPF_PROG(inode_setxattr, void *ns, struct dentry *dentry, const char *name, const void *value, size_t size,
	     int flags, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, FILE_OP_SETXATTR);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(inode_removexattr, void *ns, struct dentry *dentry, const char *name, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, FILE_OP_REMOVEXATTR);
}

/* POSIX ACLs have their own hooks since 6.2 (before, they were xattrs):
 * attached where the kernel has them. */
SEC("lsm/inode_set_acl")
int BPF_PROG(inode_set_acl, void *idmap, struct dentry *dentry, const char *acl_name, void *kacl, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, FILE_OP_SETXATTR);
}

SEC("lsm/inode_remove_acl")
int BPF_PROG(inode_remove_acl, void *idmap, struct dentry *dentry, const char *acl_name, int ret)
{
	if (ret)
		return ret;
	return dentry_hook(dentry, dentry->d_inode, FILE_OP_REMOVEXATTR);
}

/* file_hook judges operation op on an open file (its inode, then its
 * path's ancestors across mounts, like file_open). */
static __always_inline int file_hook(struct file *file, __u8 op)
{
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM;
	struct dentry *d = file->f_path.dentry;
	struct vfsmount *vm = BPF_CORE_READ(file, f_path.mnt);
	struct mount *m = container_of(vm, struct mount, mnt);
	struct inode *inode = file->f_inode;
	__u32 rule = inode ? inode_rule(rules, inode) : 0;
	if (!rule && s->has_dir_rules)
		rule = ancestor_rule(gen, d, m);
	return file_verdict(s, rule, inode, op);
}

/* Mapping a denied file executable (a descriptor obtained before the
 * monitor started, or passed in from outside). */
SEC("lsm/mmap_file")
int BPF_PROG(mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!file || !(prot & PROT_EXEC))
		return 0;
	return file_hook(file, FILE_OP_MMAP);
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
	return file_hook(file, FILE_OP_MMAP);
}

/* ---- Unix-domain sockets. Reaching a named socket (connect, or a
 * datagram sent to it) is an access to its file: judged by the file rules
 * on the socket's inode and its ancestors. An abstract socket has no file:
 * an in-scope task may reach one only when its owner is in a scope too
 * (RULE_ABSTRACT_UNIX otherwise), so that a server cannot talk to a
 * daemon's abstract socket outside the sandbox. */

/* cgroup_in_scope reports whether cgroup cg (not a BTF pointer) is a scope
 * cgroup or below one. */
static __always_inline int cgroup_in_scope(struct cgroup *cg)
{
	if (scope_config.scope_all)
		return 1;
	if (!cg)
		return 0;
	int level = BPF_CORE_READ(cg, level);
#pragma unroll
	for (int i = 0; i < MAX_SCOPES; i++) {
		if (i >= scope_config.nscopes)
			break;
		int l = scope_config.scope_level[i];
		if (l > level || l < 0 || l > 1024)
			continue;
		struct cgroup *anc = 0;
		bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[l]);
		if (anc && BPF_CORE_READ(anc, kn, id) == scope_config.scope_id[i])
			return 1;
	}
	return 0;
}

/* unix_peer judges reaching the Unix socket other. */
static __always_inline int unix_peer(struct sock *other, __u8 op)
{
	if (!in_scope())
		return 0;
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM;
	struct unix_sock *u = bpf_skc_to_unix_sock(other);
	if (!u)
		return 0;
	struct dentry *d = u->path.dentry;
	if (!d) {
		/* Abstract (or unnamed: a socketpair peer, which the task
		 * already holds): only a bound address makes it abstract. */
		if (!u->addr)
			return 0;
		struct cgroup *cg = BPF_CORE_READ(other, sk_cgrp_data.cgroup);
		if (cgroup_in_scope(cg))
			return 0;
		return file_verdict(s, RULE_ABSTRACT_UNIX, 0, op);
	}
	struct vfsmount *vm = BPF_CORE_READ(u, path.mnt);
	struct mount *m = container_of(vm, struct mount, mnt);
	struct inode *inode = d->d_inode;
	__u32 rule = inode ? inode_rule(rules, inode) : 0;
	if (!rule && s->has_dir_rules)
		rule = ancestor_rule(gen, d, m);
	return file_verdict(s, rule, inode, op);
}

SEC("lsm/unix_stream_connect")
int BPF_PROG(unix_stream_connect, struct sock *sock, struct sock *other, struct sock *newsk, int ret)
{
	if (ret)
		return ret;
	return unix_peer(other, FILE_OP_CONNECT);
}

SEC("lsm/unix_may_send")
int BPF_PROG(unix_may_send, struct socket *sock, struct socket *other, int ret)
{
	if (ret)
		return ret;
	struct sock *sk = other->sk;
	if (!sk)
		return 0;
	return unix_peer(sk, FILE_OP_SEND);
}

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
