/* SPDX-License-Identifier: GPL-2.0 */
/* Network egress: cgroup connect4/6 and sendmsg4/6.
 *
 * Precedence: deny_ports and deny_cidrs always win; otherwise, when
 * allow_cidrs is non-empty, a destination outside it is blocked under
 * RULE_NOT_IN_ALLOW. An IPv4-mapped IPv6 destination (::ffff:a.b.c.d) is
 * judged by the IPv4 rules.
 *
 * The unspecified addresses (0.0.0.0, ::, ::ffff:0.0.0.0) are judged as the
 * local address the kernel turns them into after these hooks ran: for IPv4
 * routing makes the destination the socket's source address (bound, or
 * IP_PKTINFO for sendmsg) or, without one, 127.0.0.1; for IPv6, :: becomes
 * ::1, or ::ffff:127.0.0.1 on a socket bound to an IPv4-mapped address.
 * Where two candidates are possible both are judged, and a refusal by either
 * refuses the call (fail closed); the event names the address judged.
 *
 * Every rule map is an array of two maps, one per policy generation. */
#pragma once

#include "common.h"
#include "net2.h"
#include "vcache.h"

struct assay_lpm_v4_key {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct assay_lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct assay_net_event {
	struct assay_event_header h;
	__u16 family; /* AF_INET or AF_INET6, the socket's family */
	__u16 port;   /* host byte order */
	__u8 protocol;
	__u8 mapped; /* 1: IPv4-mapped IPv6 destination, judged as IPv4 */
	__u8 unspec; /* the caller asked for an unspecified address: UNSPEC_* */
	__u8 _pad;
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
};

/* assay_net_event.unspec: what the caller asked for (the event's address
 * is the one judged in its place). */
#define UNSPEC_NONE 0
#define UNSPEC_V4 1     /* 0.0.0.0 */
#define UNSPEC_V6 2     /* :: */
#define UNSPEC_MAPPED 3 /* ::ffff:0.0.0.0 */

#define LOOPBACK4 0x7f000001 /* 127.0.0.1, host byte order */

/* Port -> rule id; 0: no rule. An array: one load, no hashing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(max_entries, 65536);
		__type(key, __u32);
		__type(value, __u32);
	});
} deny_ports SEC(".maps");

#define LPM_MAP(name, keytype)                                  \
	struct {                                                    \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);               \
		__uint(max_entries, 2);                                 \
		__type(key, __u32);                                     \
		__array(values, struct {                                \
			__uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
			__uint(max_entries, 1);                             \
			__uint(map_flags, BPF_F_NO_PREALLOC);               \
			__type(key, struct keytype);                        \
			__type(value, __u32);                               \
		});                                                     \
	} name SEC(".maps")

LPM_MAP(deny_v4, assay_lpm_v4_key);
LPM_MAP(allow_v4, assay_lpm_v4_key);
LPM_MAP(deny_v6, assay_lpm_v6_key);
LPM_MAP(allow_v6, assay_lpm_v6_key);

/* The rule maps of one generation. Any missing: the caller fails closed. */
struct net_rules {
	void *ports, *deny4, *allow4, *deny6, *allow6;
	void *n2deny4, *n2allow4, *n2deny6, *n2allow6; /* version 2 (net2.h) */
	__u8 proto;                                    /* the socket's protocol, for version 2 */
	__u32 gen;                                     /* the generation they are */
};

static __always_inline int net_rules(__u32 gen, struct net_rules *r)
{
	r->ports = bpf_map_lookup_elem(&deny_ports, &gen);
	r->deny4 = bpf_map_lookup_elem(&deny_v4, &gen);
	r->allow4 = bpf_map_lookup_elem(&allow_v4, &gen);
	r->deny6 = bpf_map_lookup_elem(&deny_v6, &gen);
	r->allow6 = bpf_map_lookup_elem(&allow_v6, &gen);
	r->n2deny4 = bpf_map_lookup_elem(&net2_deny_v4, &gen);
	r->n2allow4 = bpf_map_lookup_elem(&net2_allow_v4, &gen);
	r->n2deny6 = bpf_map_lookup_elem(&net2_deny_v6, &gen);
	r->n2allow6 = bpf_map_lookup_elem(&net2_allow_v6, &gen);
	r->proto = 0;
	r->gen = gen;
	return r->ports && r->deny4 && r->allow4 && r->deny6 && r->allow6 && r->n2deny4 && r->n2allow4 &&
	       r->n2deny6 && r->n2allow6;
}

static __always_inline __u32 port_rule(const struct net_rules *r, __u16 port)
{
	__u32 key = port;
	__u32 *id;
	if (port == 0)
		return 0;
	id = bpf_map_lookup_elem(r->ports, &key);
	return id ? *id : 0;
}

static __always_inline __u32 judge_v4_body(const struct assay_settings *s, const struct net_rules *r, __u32 addr,
					   __u16 port)
{
	struct assay_lpm_v4_key key = {.prefixlen = 32, .addr = addr};
	__u32 *id;
	__u32 rule = port_rule(r, port);
	if (rule)
		return rule;
	id = bpf_map_lookup_elem(r->deny4, &key);
	if (id)
		return *id;
	if (s->net2 & NET2_ACTIVE)
		return judge2_v4(s, r->n2deny4, r->n2allow4, addr, port, r->proto);
	if (s->allow_active && !bpf_map_lookup_elem(r->allow4, &key))
		return RULE_NOT_IN_ALLOW;
	return 0;
}

static __always_inline __u32 judge_v6_body(const struct assay_settings *s, const struct net_rules *r,
					   const struct assay_lpm_v6_key *key, __u16 port)
{
	__u32 *id;
	__u32 rule = port_rule(r, port);
	if (rule)
		return rule;
	id = bpf_map_lookup_elem(r->deny6, key);
	if (id)
		return *id;
	if (s->net2 & NET2_ACTIVE)
		return judge2_v6(s, r->n2deny6, r->n2allow6, key->addr, port, r->proto);
	if (s->allow_active && !bpf_map_lookup_elem(r->allow6, key))
		return RULE_NOT_IN_ALLOW;
	return 0;
}

/* assay_judge4 and assay_judge6 are judge_v4_body and judge_v6_body as
 * global functions: the verifier checks a global function once per
 * program, not once per call site. Inlined at every call (up to four
 * IPv4 and two IPv6 judgements in one program: the unspecified and
 * IPv4-mapped cases), the IPv6 programs were about 7000 instructions and
 * their verification most of assay's start-up CPU time. Their arguments
 * are scalars (a global function gets no pointers to the caller's
 * stack): the generation, whose settings and maps they look up again
 * (missing: fail closed), and the port and protocol packed as
 * port << 8 | protocol. */
__noinline __u32 assay_judge4(__u32 gen, __u32 addr, __u32 port_proto)
{
	struct net_rules r;
	struct assay_settings *s = get_settings(gen);
	if (!s || !net_rules(gen, &r))
		return RULE_NOT_IN_ALLOW;
	r.proto = port_proto & 0xff;
	return judge_v4_body(s, &r, addr, port_proto >> 8);
}

__noinline __u32 assay_judge6(__u32 w0, __u32 w1, __u32 w2, __u32 w3, __u32 gen_port_proto)
{
	struct net_rules r;
	__u32 gen = gen_port_proto >> 24;
	struct assay_settings *s = get_settings(gen);
	if (!s || !net_rules(gen, &r))
		return RULE_NOT_IN_ALLOW;
	r.proto = gen_port_proto & 0xff;
	struct assay_lpm_v6_key key = {.prefixlen = 128};
	__u32 *a = (__u32 *)key.addr;
	a[0] = w0;
	a[1] = w1;
	a[2] = w2;
	a[3] = w3;
	return judge_v6_body(s, &r, &key, (gen_port_proto >> 8) & 0xffff);
}

static __always_inline __u32 judge_v4(const struct assay_settings *s, const struct net_rules *r, __u32 addr,
				      __u16 port)
{
	return assay_judge4(r->gen, addr, (__u32)port << 8 | r->proto);
}

static __always_inline __u32 judge_v6(const struct assay_settings *s, const struct net_rules *r,
				      const struct assay_lpm_v6_key *key, __u16 port)
{
	const __u32 *a = (const __u32 *)key->addr;
	return assay_judge6(a[0], a[1], a[2], a[3], r->gen << 24 | (__u32)port << 8 | r->proto);
}

/* judge_v4_cached and judge_v6_cached are judge_v4 and judge_v6 behind
 * the verdict cache (vcache.h) of epoch ep. */
static __always_inline __u32 judge_v4_cached(const struct assay_settings *s, const struct net_rules *r, __u64 ep,
					     __u32 addr, __u16 port)
{
	__u32 a[4] = {addr, 0, 0, 0};
	__u32 rule;
	if (vcache_get(ep, a, 4, port, r->proto, &rule))
		return rule;
	rule = judge_v4(s, r, addr, port);
	vcache_put(ep, a, 4, port, r->proto, rule);
	return rule;
}

static __always_inline __u32 judge_v6_cached(const struct assay_settings *s, const struct net_rules *r, __u64 ep,
					     const struct assay_lpm_v6_key *key, __u16 port)
{
	__u32 a[4];
	__u32 rule;
	__builtin_memcpy(a, key->addr, 16);
	if (vcache_get(ep, a, 6, port, r->proto, &rule))
		return rule;
	rule = judge_v6(s, r, key, port);
	vcache_put(ep, a, 6, port, r->proto, rule);
	return rule;
}

/* The fast path: a destination whose verdict of the current epoch is in
 * the cache as allowed (rule 0) is let through before anything else is
 * read: no generation, settings or rule-map lookups. Exact for the same
 * reason the cache is (vcache.h): the entry was computed from the rules
 * of the generation that was active under epoch ep, and every change of
 * generation or learned address starts a new epoch. Only destinations
 * that the slow path judges with judge_v4_cached/judge_v6_cached take
 * it: never port 53 (the DNS redirect, decided by the generation's
 * settings) nor an unspecified address (judged as the local one the
 * kernel picks). A cached refusal takes the slow path, which reports
 * it under the generation's settings (audit or block). */
static __always_inline int allowed_cached4(struct bpf_sock_addr *ctx, __u64 ep, __u32 addr)
{
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 a[4] = {addr, 0, 0, 0};
	__u32 rule;
	if (!addr || port == DNS_PORT)
		return 0;
	return vcache_get(ep, a, 4, port, (__u8)ctx->protocol, &rule) && rule == 0;
}

static __always_inline int allowed_cached6(struct bpf_sock_addr *ctx, __u64 ep)
{
	__u32 w[4];
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff))
		return allowed_cached4(ctx, ep, w[3]);
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 rule;
	if ((w[0] | w[1] | w[2] | w[3]) == 0 || port == DNS_PORT)
		return 0;
	return vcache_get(ep, w, 6, port, (__u8)ctx->protocol, &rule) && rule == 0;
}

/* judge_unspec4 judges 0.0.0.0 as routing resolves it
 * (ip_route_output_key: daddr = saddr, or 127.0.0.1 without a source): src
 * is the source the call will use (network byte order, 0 if none). A socket
 * whose source is a broadcast or multicast address gets 127.0.0.1 although
 * src is set, so both candidates are judged; *addr is set to the one
 * reported (the first refused, else the source). */
static __always_inline __u32 judge_unspec4(const struct assay_settings *s, const struct net_rules *r, __u32 src,
					   __u16 port, __u32 *addr)
{
	__u32 lo = bpf_htonl(LOOPBACK4);
	__u32 rule;
	*addr = src ? src : lo;
	if (src && src != lo) {
		rule = judge_v4(s, r, src, port);
		if (rule)
			return rule;
	}
	rule = judge_v4(s, r, lo, port);
	if (rule)
		*addr = lo;
	return rule;
}

static __always_inline void aggregate_net(__u8 kind, __u8 verdict, __u32 rule, __u16 family, __u8 protocol,
					  __u16 port, __u8 mapped, __u8 unspec, const __u32 *addr_words, int nwords,
					  int dropped)
{
	struct assay_agg_key k;
	__builtin_memset(&k, 0, sizeof(k));
	k.cgroup_id = bpf_get_current_cgroup_id();
	k.rule_id = rule;
	k.kind = kind;
	k.verdict = verdict;
	k.protocol = protocol;
	k.mapped = mapped;
	k.family = family;
	k.port = port;
	k.unspec = unspec;
	__u32 *dst = (__u32 *)k.addr;
	dst[0] = addr_words[0];
	dst[1] = nwords > 1 ? addr_words[1] : 0;
	dst[2] = nwords > 2 ? addr_words[2] : 0;
	dst[3] = nwords > 3 ? addr_words[3] : 0;
	aggregate(PATH_SOCKET, &k, dropped);
}

static __always_inline void emit_net(__u8 kind, __u8 verdict, __u32 rule, __u16 family, __u8 protocol, __u16 port,
				     __u8 mapped, __u8 unspec, const __u32 *addr_words, int nwords)
{
	if (!event_budget(PATH_SOCKET)) {
		aggregate_net(kind, verdict, rule, family, protocol, port, mapped, unspec, addr_words, nwords, 0);
		return;
	}
	struct assay_net_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(PATH_SOCKET, COUNT_DROPPED);
		aggregate_net(kind, verdict, rule, family, protocol, port, mapped, unspec, addr_words, nwords, 1);
		return;
	}
	fill_header(&e->h, kind, verdict, sizeof(*e), rule);
	e->family = family;
	e->port = port;
	e->protocol = protocol;
	e->mapped = mapped;
	e->unspec = unspec;
	e->_pad = 0;
	__u32 *dst = (__u32 *)e->addr;
	dst[0] = addr_words[0];
	dst[1] = nwords > 1 ? addr_words[1] : 0;
	dst[2] = nwords > 2 ? addr_words[2] : 0;
	dst[3] = nwords > 3 ? addr_words[3] : 0;
	bpf_ringbuf_submit(e, 0);
	count(PATH_SOCKET, COUNT_EMITTED);
}

/* assay_emit_net is emit_net as a global function, verified once per
 * program instead of at each of the up to five places a program reports a
 * refusal. Scalars only: the address words two by two, and
 * kind | verdict << 8 | family << 16 | protocol << 24 | port << 32 |
 * mapped << 48 | unspec << 56. */
__noinline int assay_emit_net(__u64 a01, __u64 a23, __u64 meta, __u32 rule)
{
	__u32 w[4] = {(__u32)a01, (__u32)(a01 >> 32), (__u32)a23, (__u32)(a23 >> 32)};
	emit_net((__u8)meta, (__u8)(meta >> 8), rule, (__u8)(meta >> 16), (__u8)(meta >> 24), (__u16)(meta >> 32),
		 (__u8)(meta >> 48), (__u8)(meta >> 56), w, 4);
	return 0;
}

/* verdict turns a matched rule into the program's return value: 1 lets the
 * call through, 0 makes the kernel return EPERM. */
static __always_inline int verdict(const struct assay_settings *s, __u8 kind, __u32 rule, __u16 family,
				   __u8 protocol, __u16 port, __u8 mapped, __u8 unspec, const __u32 *addr_words,
				   int nwords)
{
	if (!rule)
		return 1;
	__u8 v = s->audit ? VERDICT_AUDIT : VERDICT_BLOCKED;
	__u64 a01 = addr_words[0], a23 = 0;
	if (nwords > 1) {
		a01 |= (__u64)addr_words[1] << 32;
		a23 = addr_words[2] | (__u64)addr_words[3] << 32;
	}
	assay_emit_net(a01, a23,
		       (__u64)kind | (__u64)v << 8 | (__u64)(__u8)family << 16 | (__u64)protocol << 24 |
			       (__u64)port << 32 | (__u64)mapped << 48 | (__u64)unspec << 56,
		       rule);
	return v == VERDICT_AUDIT;
}

/* The socket's bound addresses (bpf_sock: src_ip4 is inet_rcv_saddr, which
 * for an AF_INET6 socket is the IPv4 part of a mapped bound address). */
static __always_inline __u32 sock_src4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	return sk ? sk->src_ip4 : 0;
}

static __always_inline int sock_bound_mapped(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 0;
	return sk->src_ip6[0] == 0 && sk->src_ip6[1] == 0 && sk->src_ip6[2] == bpf_htonl(0x0000ffff);
}

/* handle4 judges an IPv4 destination. For 0.0.0.0 it needs the source
 * address the call will use (network byte order, 0 if none yet): for
 * sendmsg msg_src_ip4 (the bound address, or IP_PKTINFO's), for connect
 * the bound one; read only past the fast path. */
static __always_inline int handle4(struct bpf_sock_addr *ctx, __u8 kind)
{
	struct net_rules r;
	__u64 ep = vcache_epoch(); /* first: see vcache.h */
	if (allowed_cached4(ctx, ep, ctx->user_ip4))
		return 1;
	int gen = policy_gen_after(ep);
	if (gen < 0)
		return 0; /* no policy: fail closed */
	struct assay_settings *s = get_settings(gen);
	if (!s || !net_rules(gen, &r))
		return 0;
	r.proto = (__u8)ctx->protocol;
	__u32 addr = ctx->user_ip4;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 protocol = (__u8)ctx->protocol;
	__u8 unspec = UNSPEC_NONE;
	__u32 rule;
	if (dns_active(s, port)) {
		/* Every DNS query goes to assay's resolver (dns.h). */
		if (dns_tcp_udp(ctx))
			return dns_redirect4(ctx);
		rule = RULE_NOT_IN_ALLOW;
	} else if (addr == 0) {
		__u32 src = kind == EV_SENDMSG ? ctx->msg_src_ip4 : sock_src4(ctx);
		unspec = UNSPEC_V4;
		rule = judge_unspec4(s, &r, src, port, &addr);
	} else {
		rule = judge_v4_cached(s, &r, ep, addr, port);
	}
	if (ctx->family == AF_INET6) {
		/* An AF_INET6 UDP socket sending to ::ffff:a.b.c.d takes the
		 * kernel's IPv4 path and lands here: report it as it was asked. */
		__u32 w[4] = {0, 0, bpf_htonl(0x0000ffff), addr};
		if (unspec)
			unspec = UNSPEC_MAPPED;
		return verdict(s, kind, rule, AF_INET6, protocol, port, 1, unspec, w, 4);
	}
	return verdict(s, kind, rule, AF_INET, protocol, port, 0, unspec, &addr, 1);
}

/* handle6 judges an IPv6 destination. Past the fast path it reads the
 * IPv4 source the call would use for a mapped destination (network byte
 * order, 0 if none) and whether the socket is bound to an IPv4-mapped
 * address (then the kernel turns :: into ::ffff:127.0.0.1). */
static __always_inline int handle6(struct bpf_sock_addr *ctx, __u8 kind)
{
	struct net_rules r;
	__u64 ep = vcache_epoch(); /* first: see vcache.h */
	if (allowed_cached6(ctx, ep))
		return 1;
	int gen = policy_gen_after(ep);
	if (gen < 0)
		return 0;
	struct assay_settings *s = get_settings(gen);
	if (!s || !net_rules(gen, &r))
		return 0;
	r.proto = (__u8)ctx->protocol;
	__u32 w[4];
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 protocol = (__u8)ctx->protocol;
	__u32 rule;

	if (dns_active(s, port)) {
		int mapped = w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
		if (dns_tcp_udp(ctx))
			return dns_redirect6(ctx, w, mapped);
		return verdict(s, kind, RULE_NOT_IN_ALLOW, AF_INET6, protocol, port, mapped, UNSPEC_NONE, w, 4);
	}
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff)) {
		__u32 a = w[3];
		__u8 unspec = UNSPEC_NONE;
		if (a == 0) {
			unspec = UNSPEC_MAPPED;
			rule = judge_unspec4(s, &r, sock_src4(ctx), port, &a);
			w[3] = a;
		} else {
			rule = judge_v4_cached(s, &r, ep, a, port);
		}
		return verdict(s, kind, rule, AF_INET6, protocol, port, 1, unspec, w, 4);
	}
	if (w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0) {
		/* :: is ::1 (tcp_v6_connect, ip6_datagram_connect,
		 * udpv6_sendmsg), or ::ffff:127.0.0.1 when the socket is bound
		 * to a mapped address: judge that one first, then ::1 too. */
		if (sock_bound_mapped(ctx)) {
			__u32 lo = bpf_htonl(LOOPBACK4);
			rule = judge_v4(s, &r, lo, port);
			if (rule) {
				__u32 m[4] = {0, 0, bpf_htonl(0x0000ffff), lo};
				return verdict(s, kind, rule, AF_INET6, protocol, port, 1, UNSPEC_V6, m, 4);
			}
		}
		w[3] = bpf_htonl(1);
		struct assay_lpm_v6_key key = {.prefixlen = 128};
		__builtin_memcpy(key.addr, w, 16);
		rule = judge_v6(s, &r, &key, port);
		return verdict(s, kind, rule, AF_INET6, protocol, port, 0, UNSPEC_V6, w, 4);
	}
	struct assay_lpm_v6_key key = {.prefixlen = 128};
	__builtin_memcpy(key.addr, w, 16);
	rule = judge_v6_cached(s, &r, ep, &key, port);
	return verdict(s, kind, rule, AF_INET6, protocol, port, 0, UNSPEC_NONE, w, 4);
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return handle4(ctx, EV_CONNECT);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return handle6(ctx, EV_CONNECT);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return handle4(ctx, EV_SENDMSG);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return handle6(ctx, EV_SENDMSG);
}
