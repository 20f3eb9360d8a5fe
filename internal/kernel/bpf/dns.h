/* SPDX-License-Identifier: GPL-2.0 */
/* Domain names in egress (policy version 2 host entries), with assay's
 * own resolver (internal/dns). Active when settings.net2 has NET2_DNS.
 *
 * Redirect: every connect and sendmsg to port 53 (TCP and UDP, IPv4, IPv6
 * and IPv4-mapped, any address) is rewritten to the resolver's loopback
 * address and port (dns_conf), and the original destination is kept per
 * socket (dns_orig, by socket cookie); recvmsg4/6 rewrite the source of a
 * datagram from the resolver back to that destination, so the reply seems
 * to come from the address the program asked. Port 53 over any other
 * protocol is refused. No port-53 traffic leaves the sandbox: without the
 * resolver's address the call fails closed.
 *
 * Learned addresses: the resolver writes the A/AAAA answers of allowed
 * names into dns_v4 / dns_v6 (keys as net2.h's: port, protocol, address;
 * port 0 and protocol 0 match any) before it releases the answer. They
 * are judged after the version 2 deny and allow entries: deny wins, then
 * CIDR allow entries, then a learned address, then the default. These
 * maps are not per generation: user space keeps them in step with the
 * policy on reload and removes expired entries. */
#pragma once

#include "common.h"

#define NET2_DNS 4 /* settings.net2: host entries: redirect port 53, judge learned addresses */

#define DNS_PORT 53
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

/* Where the resolver listens (network byte order). port6 0: no IPv6
 * listener (an IPv6 query then fails closed). */
struct assay_dns_conf {
	__u32 addr4;
	__u16 port4;
	__u16 port6;
	__u8 addr6[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct assay_dns_conf);
} dns_conf SEC(".maps");

struct assay_dns_v4_key {
	__u8 port[2]; /* network order; 0: any */
	__u8 proto;   /* 0: any */
	__u8 _pad;
	__u8 addr[4];
};

struct assay_dns_v6_key {
	__u8 port[2];
	__u8 proto;
	__u8 _pad;
	__u8 addr[16];
};

/* Learned (address, port, protocol) -> rule id: 262144 keys per family,
 * allocated as they are learned. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct assay_dns_v4_key);
	__type(value, __u32);
} dns_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct assay_dns_v6_key);
	__type(value, __u32);
} dns_v6 SEC(".maps");

/* A redirected socket's original destination: an IPv4 one as
 * ::ffff:a.b.c.d. */
struct assay_dns_orig {
	__u32 addr[4];
	__u16 port; /* network order */
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct assay_dns_orig);
} dns_orig SEC(".maps");

/* dns_find looks a learned key up with the (port, protocol) combinations,
 * as net2_find does. */
static __always_inline int dns_find(void *m, void *key, __u8 *kport, __u8 *kproto, __u16 port, __u8 proto)
{
	for (int i = 0; i < 4; i++) {
		__u16 p = (i & 1) ? 0 : port;
		__u8 q = (i & 2) ? 0 : proto;
		if (i > 0 && ((i & 1) && !port))
			continue;
		if (i > 0 && ((i & 2) && !proto))
			continue;
		kport[0] = p >> 8;
		kport[1] = p & 0xff;
		*kproto = q;
		if (bpf_map_lookup_elem(m, key))
			return 1;
	}
	return 0;
}

static __always_inline int dns_learned_v4(__u32 addr, __u16 port, __u8 proto)
{
	struct assay_dns_v4_key key = {};
	__builtin_memcpy(key.addr, &addr, 4);
	return dns_find(&dns_v4, &key, key.port, &key.proto, port, proto);
}

static __always_inline int dns_learned_v6(const __u8 *addr, __u16 port, __u8 proto)
{
	struct assay_dns_v6_key key = {};
	__builtin_memcpy(key.addr, addr, 16);
	return dns_find(&dns_v6, &key, key.port, &key.proto, port, proto);
}

static __always_inline void dns_remember(struct bpf_sock_addr *ctx, __u32 a0, __u32 a1, __u32 a2, __u32 a3)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct assay_dns_orig o = {.addr = {a0, a1, a2, a3}, .port = (__u16)ctx->user_port};
	bpf_map_update_elem(&dns_orig, &cookie, &o, BPF_ANY);
}

/* dns_redirect4 sends an IPv4 (or, from an AF_INET6 UDP socket, an
 * IPv4-mapped) port-53 destination to the resolver: 1 to let the call on,
 * 0 to refuse it. */
static __always_inline int dns_redirect4(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct assay_dns_conf *c = bpf_map_lookup_elem(&dns_conf, &zero);
	if (!c || !c->port4)
		return 0;
	dns_remember(ctx, 0, 0, bpf_htonl(0x0000ffff), ctx->user_ip4);
	ctx->user_ip4 = c->addr4;
	ctx->user_port = c->port4;
	return 1;
}

/* dns_redirect6 does it for an IPv6 destination (w: its words; mapped:
 * an IPv4-mapped one, sent to the resolver's IPv4 address, mapped). */
static __always_inline int dns_redirect6(struct bpf_sock_addr *ctx, const __u32 *w, int mapped)
{
	__u32 zero = 0;
	struct assay_dns_conf *c = bpf_map_lookup_elem(&dns_conf, &zero);
	if (!c)
		return 0;
	dns_remember(ctx, w[0], w[1], w[2], w[3]);
	if (mapped) {
		if (!c->port4)
			return 0;
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = c->addr4;
		ctx->user_port = c->port4;
		return 1;
	}
	if (!c->port6)
		return 0;
	__u32 a[4];
	__builtin_memcpy(a, c->addr6, 16);
	ctx->user_ip6[0] = a[0];
	ctx->user_ip6[1] = a[1];
	ctx->user_ip6[2] = a[2];
	ctx->user_ip6[3] = a[3];
	ctx->user_port = c->port6;
	return 1;
}

/* dns_active: port-53 destinations are the resolver's. */
static __always_inline int dns_active(const struct assay_settings *s, __u16 port)
{
	return (s->net2 & NET2_DNS) && port == DNS_PORT;
}

/* dns_tcp_udp: the socket's protocol may carry DNS to the resolver. */
static __always_inline int dns_tcp_udp(struct bpf_sock_addr *ctx)
{
	return ctx->protocol == IPPROTO_TCP_ || ctx->protocol == IPPROTO_UDP_;
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct assay_dns_conf *c = bpf_map_lookup_elem(&dns_conf, &zero);
	if (!c || !c->port4 || ctx->user_ip4 != c->addr4 || (__u16)ctx->user_port != c->port4)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct assay_dns_orig *o = bpf_map_lookup_elem(&dns_orig, &cookie);
	if (!o)
		return 1;
	ctx->user_ip4 = o->addr[3];
	ctx->user_port = o->port;
	return 1;
}

SEC("cgroup/recvmsg6")
int recvmsg6(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct assay_dns_conf *c = bpf_map_lookup_elem(&dns_conf, &zero);
	if (!c)
		return 1;
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__u16 port = (__u16)ctx->user_port;
	int mapped = w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff);
	if (mapped) {
		if (!c->port4 || w3 != c->addr4 || port != c->port4)
			return 1;
	} else {
		__u32 a[4];
		__builtin_memcpy(a, c->addr6, 16);
		if (!c->port6 || port != c->port6 || w0 != a[0] || w1 != a[1] || w2 != a[2] || w3 != a[3])
			return 1;
	}
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct assay_dns_orig *o = bpf_map_lookup_elem(&dns_orig, &cookie);
	if (!o)
		return 1;
	ctx->user_ip6[0] = o->addr[0];
	ctx->user_ip6[1] = o->addr[1];
	ctx->user_ip6[2] = o->addr[2];
	ctx->user_ip6[3] = o->addr[3];
	ctx->user_port = o->port;
	return 1;
}
