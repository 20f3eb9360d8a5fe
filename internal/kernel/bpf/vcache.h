/* SPDX-License-Identifier: GPL-2.0 */
/* The verdict cache of the socket path: a per-CPU, direct-mapped table in
 * front of the rule lookups (net.h's judge_v4/judge_v6: the ports array,
 * the LPM tries, version 2's four lookups per trie, learned addresses).
 * A repeated destination costs one hash and one array lookup instead of
 * a walk of tries that can be 17-128 nodes deep with 100k prefixes.
 *
 * Exactness. An entry holds the verdict (the rule id; 0: allowed) for one
 * (family, address, port, protocol) under one cache epoch
 * (verdict_epoch), and is used only while the epoch is unchanged. User
 * space sets a new epoch after every change that can alter a verdict:
 * after a reload flips the active generation, and after a learned address
 * is added or removed (kernel.Instance.InvalidateVerdicts); epochs only
 * grow (CLOCK_MONOTONIC nanoseconds, or the last plus one), so an epoch
 * is never reused. Programs read the epoch before anything the verdict
 * depends on, and the active generation's key depends on the value read
 * (an address dependency: ordered on arm64 too). So an entry filled
 * before a change carries an older epoch and misses after it; an entry
 * filled with the new epoch was computed from the new rules.
 *
 * Tearing. The table is per CPU and socket programs run with migration
 * disabled, but they can be preempted: an entry is guarded by a sequence
 * number, odd while it is written. A writer claims the entry with a
 * compare-and-swap from an even value (a writer preempted by another
 * finds the entry odd and does not cache); a reader uses an entry only if
 * its sequence was even and the same before and after reading it. */
#pragma once

#include "common.h"

#define VCACHE_BITS 10
#define VCACHE_SLOTS (1 << VCACHE_BITS)

struct assay_vcache_entry {
	__u64 seq; /* odd while being written */
	__u64 epoch;
	__u32 addr[4]; /* IPv4 in addr[0], the rest 0 */
	__u16 port;
	__u8 proto;
	__u8 fam; /* 4 or 6; 0: empty */
	__u32 rule;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VCACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct assay_vcache_entry);
} vcache SEC(".maps");

/* The current cache epoch (user space: kernel.Instance.InvalidateVerdicts).
 * 0 before the loader set one: nothing is cached then. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} verdict_epoch SEC(".maps");

#define vcache_barrier() asm volatile("" ::: "memory")

static __always_inline __u64 vcache_epoch(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&verdict_epoch, &zero);
	return e ? *(volatile __u64 *)e : 0;
}

/* policy_gen_after is policy_gen, its lookup made dependent on the epoch
 * read before it (the key is ep ^ ep, 0, computed at run time). */
static __always_inline int policy_gen_after(__u64 ep)
{
	__u32 key = (__u32)ep;
	asm volatile("" : "+r"(key));
	key ^= (__u32)ep;
	__u32 *gen = bpf_map_lookup_elem(&active, &key);
	if (!gen || *gen > 1)
		return -1;
	return *gen;
}

static __always_inline __u32 vcache_slot(const __u32 *a, __u8 fam, __u16 port, __u8 proto)
{
	__u32 h = a[0] ^ a[1] ^ a[2] ^ a[3] ^ ((__u32)port << 16) ^ ((__u32)proto << 8) ^ fam;
	h *= 0x9e3779b1;
	h ^= h >> 15;
	h *= 0x85ebca6b;
	return h >> (32 - VCACHE_BITS);
}

/* vcache_get returns 1 and sets *rule when the entry for the destination
 * holds a verdict of epoch ep. */
static __always_inline int vcache_get(__u64 ep, const __u32 *a, __u8 fam, __u16 port, __u8 proto, __u32 *rule)
{
#ifdef ASSAY_NO_VCACHE /* a build without the cache, for before/after measurements */
	return 0;
#endif
	if (!ep)
		return 0;
	__u32 slot = vcache_slot(a, fam, port, proto);
	struct assay_vcache_entry *e = bpf_map_lookup_elem(&vcache, &slot);
	if (!e)
		return 0;
	__u64 s1 = *(volatile __u64 *)&e->seq;
	vcache_barrier();
	if (s1 & 1)
		return 0;
	if (e->epoch != ep || e->fam != fam || e->port != port || e->proto != proto || e->addr[0] != a[0] ||
	    e->addr[1] != a[1] || e->addr[2] != a[2] || e->addr[3] != a[3])
		return 0;
	__u32 r = e->rule;
	vcache_barrier();
	if (*(volatile __u64 *)&e->seq != s1)
		return 0;
	*rule = r;
	return 1;
}

static __always_inline void vcache_put(__u64 ep, const __u32 *a, __u8 fam, __u16 port, __u8 proto, __u32 rule)
{
#ifdef ASSAY_NO_VCACHE
	return;
#endif
	if (!ep)
		return;
	__u32 slot = vcache_slot(a, fam, port, proto);
	struct assay_vcache_entry *e = bpf_map_lookup_elem(&vcache, &slot);
	if (!e)
		return;
	__u64 s = *(volatile __u64 *)&e->seq;
	if (s & 1)
		return;
	if (__sync_val_compare_and_swap(&e->seq, s, s + 1) != s)
		return;
	vcache_barrier();
	e->epoch = ep;
	e->addr[0] = a[0];
	e->addr[1] = a[1];
	e->addr[2] = a[2];
	e->addr[3] = a[3];
	e->port = port;
	e->proto = proto;
	e->fam = fam;
	e->rule = rule;
	vcache_barrier();
	*(volatile __u64 *)&e->seq = s + 2;
}
