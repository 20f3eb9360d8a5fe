/* SPDX-License-Identifier: GPL-2.0 */
/* Network egress, policy version 2: allow and deny entries with an
 * optional prefix, port and protocol; deny entries win, then allow
 * entries, then the default. Used when settings.net2 has NET2_ACTIVE (the
 * version 1 maps of net.h are then empty).
 *
 * An entry is a key of an LPM trie whose data is [port (2 bytes, network
 * order), protocol (1 byte), address]: its prefix length is 24 plus the
 * prefix's. An entry without a port stores port 0, without a protocol
 * protocol 0, and without a prefix the /0 prefix in both families. A
 * destination is looked up four times, with (port, protocol), (port, 0),
 * (0, protocol) and (0, 0): the longest match within each is a matching
 * entry, and any matching entry decides. */
#pragma once

#include "common.h"
#include "dns.h"

#define NET2_ACTIVE 1       /* settings.net2: version 2 network rules */
#define NET2_DEFAULT_DENY 2 /* settings.net2: network.default is deny */

struct assay_net2_v4_key {
	__u32 prefixlen;
	__u8 port[2];
	__u8 proto;
	__u8 addr[4];
	__u8 _pad;
};

struct assay_net2_v6_key {
	__u32 prefixlen;
	__u8 port[2];
	__u8 proto;
	__u8 addr[16];
	__u8 _pad;
};

#define NET2_MAP(name, keytype)                                 \
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

NET2_MAP(net2_deny_v4, assay_net2_v4_key);
NET2_MAP(net2_allow_v4, assay_net2_v4_key);
NET2_MAP(net2_deny_v6, assay_net2_v6_key);
NET2_MAP(net2_allow_v6, assay_net2_v6_key);

/* net2_find looks key up with the four (port, protocol) combinations. */
static __always_inline __u32 net2_find(void *m, void *key, __u8 *kport, __u8 *kproto, __u16 port, __u8 proto)
{
	__u32 *id;
	for (int i = 0; i < 4; i++) {
		__u16 p = (i & 1) ? 0 : port;
		__u8 q = (i & 2) ? 0 : proto;
		if (i > 0 && ((i & 1) && !port))
			continue; /* the same key as an earlier one */
		if (i > 0 && ((i & 2) && !proto))
			continue;
		kport[0] = p >> 8;
		kport[1] = p & 0xff;
		*kproto = q;
		id = bpf_map_lookup_elem(m, key);
		if (id)
			return *id;
	}
	return 0;
}

/* net2_decide turns the lookups into a rule id (0: allowed). */
static __always_inline __u32 net2_decide(const struct assay_settings *s, void *deny, void *allow, void *key,
					 __u8 *kport, __u8 *kproto, __u16 port, __u8 proto)
{
	__u32 rule;
	if (!deny || !allow)
		return RULE_NOT_IN_ALLOW; /* maps missing: fail closed */
	rule = net2_find(deny, key, kport, kproto, port, proto);
	if (rule)
		return rule;
	if (net2_find(allow, key, kport, kproto, port, proto))
		return 0;
	return (s->net2 & NET2_DEFAULT_DENY) ? RULE_NOT_IN_ALLOW : 0;
}

/* judge2_v4 judges an IPv4 destination (addr in network byte order)
 * against the generation's version 2 maps deny and allow. */
static __always_inline __u32 judge2_v4(const struct assay_settings *s, void *deny, void *allow, __u32 addr, __u16 port,
				       __u8 proto)
{
	struct assay_net2_v4_key key = {.prefixlen = 24 + 32};
	__builtin_memcpy(key.addr, &addr, 4);
	__u32 rule = net2_decide(s, deny, allow, &key, key.port, &key.proto, port, proto);
	/* Not denied, not in an allow entry: an address learned for an
	 * allowed name (dns.h) passes on its rule's ports. */
	if (rule == RULE_NOT_IN_ALLOW && deny && allow && (s->net2 & NET2_DNS) && dns_learned_v4(addr, port, proto))
		return 0;
	return rule;
}

/* judge2_v6 judges an IPv6 destination (not IPv4-mapped). */
static __always_inline __u32 judge2_v6(const struct assay_settings *s, void *deny, void *allow, const __u8 *addr,
				       __u16 port, __u8 proto)
{
	struct assay_net2_v6_key key = {.prefixlen = 24 + 128};
	__builtin_memcpy(key.addr, addr, 16);
	__u32 rule = net2_decide(s, deny, allow, &key, key.port, &key.proto, port, proto);
	if (rule == RULE_NOT_IN_ALLOW && deny && allow && (s->net2 & NET2_DNS) && dns_learned_v6(addr, port, proto))
		return 0;
	return rule;
}
