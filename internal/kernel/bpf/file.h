/* SPDX-License-Identifier: GPL-2.0 */
/* File prevention: BPF LSM on file_open, plus inode_link and inode_rename
 * so that a sandboxed process cannot give a protected file a new name
 * outside a denied directory.
 *
 * A rule is an inode, keyed (dev, ino) with dev in the kernel's encoding
 * (inode->i_sb->s_dev = major << 20 | minor). A file is denied when its own
 * inode is a rule, or when any ancestor directory is one. The walk follows
 * d_parent to the root of the file's filesystem (so a bind mount of a part
 * of a denied tree is still inside it), then crosses to the mount point in
 * the parent mount and goes on (so a filesystem mounted inside a denied
 * directory is inside it too). */
#pragma once

#include "common.h"

#define MAX_WALK 128

#define FILE_OP_OPEN 1
#define FILE_OP_LINK 2
#define FILE_OP_RENAME 3

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

/* inode_rule looks an inode up in the rules. inode must be a BTF pointer
 * (a hook argument or loaded from one): its fields are read with direct
 * loads, not helper calls. */
static __always_inline __u32 inode_rule(void *rules, struct inode *inode)
{
	struct assay_file_key key = {};
	__u32 *id;
	key.dev = inode->i_sb->s_dev;
	key.ino = inode->i_ino;
	id = bpf_map_lookup_elem(rules, &key);
	return id ? *id : 0;
}

/* The same for an inode pointer read with bpf_probe_read (not BTF). */
static __always_inline __u32 inode_rule_read(void *rules, struct inode *inode)
{
	struct assay_file_key key = {};
	__u32 *id;
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key.ino = BPF_CORE_READ(inode, i_ino);
	id = bpf_map_lookup_elem(rules, &key);
	return id ? *id : 0;
}

/* above_mount continues a walk that reached root, the root of mount m's
 * filesystem: it crosses to the mount point in the parent mount and walks
 * on, crossing again at each filesystem root. Pointers here come from
 * struct mount, which BTF pointer arithmetic cannot reach (vfsmount is
 * embedded in it), so fields are read with bpf_probe_read. */
static __always_inline __u32 above_mount(void *rules, struct dentry *root, struct mount *m)
{
	struct dentry *cur = root;
	for (int i = 0; i < MAX_WALK; i++) {
		struct dentry *parent = BPF_CORE_READ(cur, d_parent);
		if (!parent)
			return 0;
		if (parent == cur) {
			if (!m)
				return 0;
			struct mount *pm = BPF_CORE_READ(m, mnt_parent);
			if (!pm || pm == m)
				return 0;
			cur = BPF_CORE_READ(m, mnt_mountpoint);
			m = pm;
		} else {
			cur = parent;
		}
		struct inode *inode = BPF_CORE_READ(cur, d_inode);
		if (!inode)
			continue;
		__u32 rule = inode_rule_read(rules, inode);
		if (rule)
			return rule;
	}
	return RULE_TOO_DEEP;
}

/* ancestor_rule walks from dentry d (a BTF pointer, in mount m, which may be
 * NULL when the hook has no mount) to the root: first along d_parent to
 * the root of d's filesystem with direct loads (the hot part: a bind mount
 * of part of a denied tree is still inside it this way), then across mount
 * points. Returns the first matching rule id, RULE_TOO_DEEP when a part of
 * the walk did not end within MAX_WALK steps (fail closed: a deeper nest
 * must not escape a directory rule), or 0. */
static __always_inline __u32 ancestor_rule(void *rules, struct dentry *d, struct mount *m)
{
	struct dentry *cur = d;
	for (int i = 0; i < MAX_WALK; i++) {
		struct dentry *parent = cur->d_parent;
		if (!parent)
			return 0;
		if (parent == cur)
			return m ? above_mount(rules, cur, m) : 0;
		cur = parent;
		struct inode *inode = cur->d_inode;
		if (!inode)
			continue;
		__u32 rule = inode_rule(rules, inode);
		if (rule)
			return rule;
	}
	return RULE_TOO_DEEP;
}

static __always_inline __u32 dentry_rule(const struct assay_settings *s, void *rules, struct dentry *d,
					 struct mount *m)
{
	struct inode *inode = d->d_inode;
	__u32 rule = 0;
	if (inode)
		rule = inode_rule(rules, inode);
	if (!rule && s->has_dir_rules)
		rule = ancestor_rule(rules, d, m);
	return rule;
}

/* file_policy finds the active generation's settings and file rules.
 * Returns 0 when they cannot be found: callers then fail closed. */
static __always_inline int file_policy(struct assay_settings **s, void **rules)
{
	int gen = policy_gen();
	if (gen < 0)
		return 0;
	__u32 g = gen;
	*s = get_settings(g);
	*rules = bpf_map_lookup_elem(&file_rules, &g);
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
		e->dev = inode ? BPF_CORE_READ(inode, i_sb, s_dev) : 0;
		e->ino = inode ? BPF_CORE_READ(inode, i_ino) : 0;
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
	if (!file_policy(&s, &rules))
		return -EPERM; /* fail closed */
	struct dentry *d = file->f_path.dentry;
	struct vfsmount *vm = BPF_CORE_READ(file, f_path.mnt);
	struct mount *m = container_of(vm, struct mount, mnt);
	struct inode *inode = file->f_inode;
	__u32 rule = inode ? inode_rule(rules, inode) : 0;
	if (!rule && s->has_dir_rules)
		rule = ancestor_rule(rules, d, m);
	return file_verdict(s, rule, inode, FILE_OP_OPEN);
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
	if (!file_policy(&s, &rules))
		return -EPERM;
	__u32 rule = dentry_rule(s, rules, old_dentry, 0);
	if (!rule)
		rule = dentry_rule(s, rules, new_dentry, 0);
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
	if (!file_policy(&s, &rules))
		return -EPERM;
	__u32 rule = dentry_rule(s, rules, old_dentry, 0);
	if (!rule)
		rule = dentry_rule(s, rules, new_dentry, 0);
	return file_verdict(s, rule, old_dentry->d_inode, FILE_OP_RENAME);
}

/* The BPF LSM probe: loaded and attached for a moment to learn whether this
 * kernel runs BPF LSM programs at all. It never denies. */
SEC("lsm/file_open")
int BPF_PROG(lsm_probe, struct file *file, int ret)
{
	return ret;
}
