/* SPDX-License-Identifier: GPL-2.0 */
/* Unix-domain sockets. Reaching a named socket (connect, or a datagram
 * sent to it) is an access to its file, asking for w: judged by the file
 * rules on the socket's inode and its ancestors (file_rules.h). An
 * abstract socket has no file: under version 1 file rules an in-scope task
 * may reach one only when its owner is in a scope too (RULE_ABSTRACT_UNIX
 * otherwise), so that a server cannot talk to a daemon's abstract socket
 * outside the sandbox; under version 2 such a socket follows
 * network.default (refused under RULE_NOT_IN_ALLOW when it is deny). */
#pragma once

#include "file_rules.h"
#include "net2.h"

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
		if (!(s->files & FILES_V2))
			return file_verdict(s, RULE_ABSTRACT_UNIX, 0, op);
		if (s->net2 & NET2_DEFAULT_DENY)
			return file_verdict(s, RULE_NOT_IN_ALLOW, 0, op);
		return 0;
	}
	struct vfsmount *vm = BPF_CORE_READ(u, path.mnt);
	struct mount *m = container_of(vm, struct mount, mnt);
	int own;
	struct file_dec r = nearest(s, rules, gen, d, m, &own);
	return file_verdict(s, refusal(s, r, ACC_W, d->d_sb), d->d_inode, op);
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
