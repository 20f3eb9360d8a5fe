/* SPDX-License-Identifier: GPL-2.0 */
/* File rules: the identity of an inode as the kernel sees it, the rule maps,
 * the ancestor walk that finds the nearest rule, the verdict and its event.
 * The hooks are in file_open.h, file_change.h and file_unix.h.
 *
 * A rule is an inode, keyed by inode_key (below), with what it allows
 * (ACC_*): a version 1 rule, and a version 2 deny, allows nothing. The rule
 * that decides for a file is the nearest one on the way up: the file's own
 * inode, then each ancestor directory. The walk follows d_parent to the root
 * of the file's filesystem (so a bind mount of a part of a rule's tree is
 * still inside it), then crosses to the mount point in the parent mount and
 * goes on (so a filesystem mounted inside a rule's directory is inside it
 * too). When no rule is found, settings.files decides (FILES_DEFAULT_DENY:
 * version 2's files.default: deny, refused under RULE_FILES_DEFAULT). */
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

/* What a rule allows (policy.Access): read files and list directories;
 * write, create, delete, rename, truncate, change attributes; execute and
 * map for execution. */
#define ACC_R 1
#define ACC_W 2
#define ACC_X 4

/* settings.files bits. */
#define FILES_V2 1           /* version 2 file rules */
#define FILES_DEFAULT_DENY 2 /* files.default: deny */

/* include/linux/fs.h, stable across versions */
#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 0x20 /* the same bit, in f_flags */
#define SB_NOUSER (1U << 31)
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
#define PROC_SUPER_MAGIC 0x9fa0

/* procfs (fs/proc): the root's inode number, and the first number of the
 * entries registered with proc_register (cpuinfo, meminfo, sys, ...), which
 * keep theirs for as long as they are registered and are the same in every
 * procfs instance. Other procfs inodes (a process's directory, sysctl
 * files) get a new number each time they are made. */
#define PROC_ROOT_INO 1
#define PROC_DYNAMIC_FIRST 0xF0000000UL

/* Keys of procfs rules: dev is PROC_KEY_DEV for every procfs instance (a
 * sandbox may mount its own), and every inode of the current process's own
 * /proc/PID directory (the policy's /proc/self/) has the ino PROC_SELF_INO,
 * above every number procfs hands out. */
#define PROC_KEY_DEV 0xffffffffU
#define PROC_SELF_INO (1ULL << 32)

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
 *        one subvolume's inode 257 match every subvolume's inode 257; and
 *        on procfs, where it is PROC_KEY_DEV (see above).
 *   ino: inode->i_ino (PROC_SELF_INO for the current process's /proc/PID).
 * User space never computes a key: it holds an O_PATH descriptor of each
 * policy path and reads the key back through the `identify` iterator
 * (file_ident.h), which uses the same inode_key as the hooks. */
struct assay_file_key {
	__u32 dev;
	__u32 _pad;
	__u64 ino;
};

/* The value of a file rule. */
struct assay_file_rule {
	__u32 id;
	__u32 access; /* ACC_* the rule allows; 0: nothing */
};

struct assay_file_event {
	struct assay_event_header h;
	__u32 dev;
	__u8 op;
	__u8 _pad[3];
	__u64 ino;
};

/* (dev, ino) -> rule, one map per policy generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct assay_file_key);
		__type(value, struct assay_file_rule);
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

/* proc_key fills the ino of a procfs inode's key: stable numbers as they
 * are, PROC_SELF_INO for an inode of the current process's own /proc/PID
 * (or of its own thread's /proc/PID/task/TID). Returns 0 for every other
 * procfs inode (its number is not stable): such an inode matches no rule,
 * and the walk goes on to its directory. */
static __always_inline int proc_key(struct inode *inode, __u64 ino, struct assay_file_key *key)
{
	key->dev = PROC_KEY_DEV;
	if (ino == PROC_ROOT_INO || (ino >= PROC_DYNAMIC_FIRST && ino <= 0xffffffffUL)) {
		key->ino = ino;
		return 1;
	}
	struct proc_inode *pi = (void *)((char *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode));
	struct pid *pid = BPF_CORE_READ(pi, pid);
	if (!pid)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (pid != BPF_CORE_READ(task, group_leader, thread_pid) && pid != BPF_CORE_READ(task, thread_pid))
		return 0;
	key->ino = PROC_SELF_INO;
	return 1;
}

/* inode_key fills the rule key of inode, a BTF pointer (a hook argument or
 * loaded from one): its fields are read with direct loads (the hot path),
 * btrfs's and procfs's with bpf_probe_read. Returns 0 when the key could not
 * be made (btrfs without its types, an unstable procfs inode). */
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
	if (sb->s_magic == PROC_SUPER_MAGIC)
		return proc_key(inode, key->ino, key);
	return 1;
}

/* The same for an inode pointer read with bpf_probe_read (not BTF). */
static __always_inline int inode_key_read(struct inode *inode, struct assay_file_key *key)
{
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	key->dev = BPF_CORE_READ(sb, s_dev);
	key->_pad = 0;
	key->ino = BPF_CORE_READ(inode, i_ino);
	unsigned long magic = BPF_CORE_READ(sb, s_magic);
	if (magic == BTRFS_SUPER_MAGIC) {
		key->dev = btrfs_subvol_dev(inode);
		return key->dev != 0;
	}
	if (magic == PROC_SUPER_MAGIC)
		return proc_key(inode, key->ino, key);
	return 1;
}

/* A decision: the rule that decides (id 0: none was found) and what it
 * allows. */
struct file_dec {
	__u32 id;
	__u32 access;
};

/* inode_rule looks an inode (a BTF pointer) up in the rules. This and
 * ancestor_rule are the whole rule lookup; a key that cannot be made
 * matches nothing (user space refuses rules on such inodes). */
static __always_inline struct file_dec inode_rule(void *rules, struct inode *inode)
{
	struct file_dec d = {};
	struct assay_file_key key;
	if (!inode_key(inode, &key))
		return d;
	struct assay_file_rule *r = bpf_map_lookup_elem(rules, &key);
	if (r) {
		d.id = r->id;
		d.access = r->access;
	}
	return d;
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
	__u32 access;
	__u32 done; /* the walk ended; rule says how */
};

/* walk_step moves one step up: to the parent dentry, or at the root of a
 * filesystem across to the mount point in the parent mount (so that a
 * filesystem mounted inside a rule's directory is inside it), and looks the
 * new dentry's inode up. Going up d_parent first, to the root of the
 * file's filesystem, makes a bind mount of part of a rule's tree still
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
	struct assay_file_key key;
	if (!inode_key_read(inode, &key))
		return 0;
	struct assay_file_rule *r = bpf_map_lookup_elem(rules, &key);
	if (r) {
		w->rule = r->id;
		w->access = r->access;
		w->done = 1;
		return 1;
	}
	return 0;
}

/* ancestor_rule walks from dentry d (in mount m, NULL when the hook has no
 * mount: the walk then ends at the root of d's filesystem) towards the
 * root, in policy generation gen, and returns the first rule found (id 0:
 * none). The walk fails closed, with a rule that allows nothing:
 * RULE_TOO_DEEP when it did not end within MAX_WALK steps (a deeper nest
 * must not escape a directory rule), RULE_DISCONNECTED when it ended at a
 * disconnected dentry (its real ancestors are unknown). */
static __always_inline struct file_dec ancestor_rule(__u32 gen, struct dentry *d, struct mount *m)
{
	struct walk_state w = {.cur = (__u64)d, .m = (__u64)m, .gen = gen};
	bpf_loop(MAX_WALK, walk_step, &w, 0);
	struct file_dec r = {.id = w.rule, .access = w.access};
	if (!w.done) {
		r.id = RULE_TOO_DEEP;
		r.access = 0;
	}
	return r;
}

/* nearest returns the rule that decides for dentry d (a BTF pointer) in
 * mount m (NULL: none known): its inode's own rule, else the nearest
 * ancestor's. A name being created (no inode yet) is decided by its
 * directory. *own says whether the rule is the inode's own. */
static __always_inline struct file_dec nearest(const struct assay_settings *s, void *rules, __u32 gen,
					       struct dentry *d, struct mount *m, int *own)
{
	struct file_dec r = {};
	struct inode *inode = d->d_inode;
	if (inode)
		r = inode_rule(rules, inode);
	*own = r.id != 0;
	if (!r.id && s->has_dir_rules)
		r = ancestor_rule(gen, d, m);
	return r;
}

/* refusal judges a decision against the access wanted (ACC_*) on a file of
 * super block sb: 0 when allowed, else the id of the rule that refuses. A
 * rule refuses what it does not allow (and everything when it allows
 * nothing); without a rule, files.default decides. Files of the kernel's
 * internal filesystems (pipes, sockets, anonymous inodes: SB_NOUSER), which
 * no path names, are not judged by the default, as under Landlock. */
static __always_inline __u32 refusal(const struct assay_settings *s, struct file_dec r, __u32 want,
				     struct super_block *sb)
{
	if (!r.id) {
		if (!(s->files & FILES_DEFAULT_DENY))
			return 0;
		if (sb && (BPF_CORE_READ(sb, s_flags) & SB_NOUSER))
			return 0;
		return RULE_FILES_DEFAULT;
	}
	if (r.access && !(want & ~r.access))
		return 0;
	return r.id;
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

/* file_verdict refuses operation op under rule (0: allowed), reporting
 * inode: an event (or its aggregate), and -EPERM unless in audit mode. */
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
		if (inode) {
			/* The event names the inode as stat(2) would (its
			 * super block's device), not by its rule key. */
			key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
			key.ino = BPF_CORE_READ(inode, i_ino);
			if (BPF_CORE_READ(inode, i_sb, s_magic) == BTRFS_SUPER_MAGIC)
				inode_key_read(inode, &key);
		}
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

/* file_decide judges want on an open file (its inode, then its path's
 * ancestors across mounts) and refuses op under the deciding rule. */
static __always_inline int file_decide(struct file *file, __u32 want, __u8 op)
{
	struct assay_settings *s;
	void *rules;
	__u32 gen;
	if (!file_policy(&s, &rules, &gen))
		return -EPERM; /* fail closed */
	struct dentry *d = file->f_path.dentry;
	struct vfsmount *vm = BPF_CORE_READ(file, f_path.mnt);
	struct mount *m = container_of(vm, struct mount, mnt);
	struct inode *inode = file->f_inode;
	struct file_dec r = {};
	if (inode)
		r = inode_rule(rules, inode);
	if (!r.id && s->has_dir_rules)
		r = ancestor_rule(gen, d, m);
	return file_verdict(s, refusal(s, r, want, d->d_sb), inode, op);
}
