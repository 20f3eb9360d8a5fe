/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by every Assay program: settings, scope check, ring buffers and
 * the per-path event counters. The layouts here are mirrored in Go
 * (internal/kernel/types.go and internal/events/record.go): change both. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define EPERM 1
#define AF_INET 2
#define AF_INET6 10

#define MAX_SCOPES 8

/* Reserved rule ids (policy ids are 1..999999). */
#define RULE_NOT_IN_ALLOW 1000000
#define RULE_TOO_DEEP 1000001

/* Counter paths. */
#define PATH_TRACEPOINT 0
#define PATH_LSM 1
#define PATH_SOCKET 2
#define NR_PATHS 3

/* Event kinds. */
#define EV_CONNECT 1
#define EV_SENDMSG 2
#define EV_FILE 3
#define EV_TRACE_OPEN 4
#define EV_TRACE_EXEC 5

/* Verdicts. */
#define VERDICT_BLOCKED 1
#define VERDICT_AUDIT 2
#define VERDICT_OBSERVED 3

/* Instance-wide: fixed when the programs are loaded. */
struct assay_scope {
	__u32 scope_all; /* 1: judge every task on the host */
	__u32 nscopes;
	__u64 scope_id[MAX_SCOPES];
	__u32 scope_level[MAX_SCOPES];
	__u32 rate_limit; /* events per second per cgroup; 0: unlimited */
	__u32 _pad;
};

/* Per policy generation: a reload fills the inactive generation, then
 * flips `active`, so every decision sees one whole policy, old or new. */
struct assay_settings {
	__u32 audit;         /* 1: report, never block */
	__u32 allow_active;  /* 1: allow_cidrs is non-empty */
	__u32 has_dir_rules; /* 1: walk ancestors on file_open */
	__u32 net2;          /* NET2_* bits (net2.h): version 2 network rules */
};

/* One cgroup's event budget for one second of CLOCK_MONOTONIC. */
struct assay_rate_key {
	__u64 cgroup_id;
	__u64 second; /* bpf_ktime_get_ns() / 1e9 */
};

struct assay_rate {
	__u64 count; /* events that asked for the budget in that second */
};

struct assay_counters {
	__u64 emitted[NR_PATHS];
	__u64 dropped[NR_PATHS];
	__u64 suppressed[NR_PATHS];
	/* Events neither emitted nor aggregated: both aggregation tables
	 * were full (see aggregate). */
	__u64 unaggregated[NR_PATHS];
};

/* Evidence a flood cannot hide. An enforcement event that is not emitted
 * (suppressed by the rate limit, or dropped because the ring buffer was
 * full) is counted in the aggregation table under its cgroup, rule and
 * target (destination, or file and operation), with the first occurrence's
 * process and the time of the first and last. User space swaps the tables
 * for empty ones and reads them (kernel.Instance.DrainAggregates), every
 * second and at stop, so every distinct pair reaches the operator with its
 * counts. When the pair table is full, the event is counted per rule
 * (unrecorded = 1, target zeroed) in the second table; when that is full
 * too, in counters.unaggregated. */
struct assay_agg_key {
	__u64 cgroup_id;
	__u32 rule_id;
	__u8 kind; /* EV_CONNECT, EV_SENDMSG, EV_FILE */
	__u8 verdict;
	__u8 protocol;
	__u8 mapped;
	__u16 family;
	__u16 port; /* host byte order */
	__u8 op;    /* FILE_OP_* */
	__u8 unspec;
	__u8 unrecorded; /* 1: the target was not recorded (pair table full) */
	__u8 _pad;
	__u32 dev;
	__u32 _pad2;
	__u64 ino;
	__u8 addr[16];
};

struct assay_agg_val {
	__u64 suppressed;
	__u64 dropped;
	__u64 first_ns; /* bpf_ktime_get_ns */
	__u64 last_ns;
	__u32 pid; /* the first occurrence's */
	__u32 tid;
	char comm[16];
};

#define AGG_PAIRS 0
#define AGG_RULES 1

/* Every ring-buffer record starts with this header (48 bytes). */
struct assay_event_header {
	__u8 kind;
	__u8 verdict;
	__u16 size; /* whole record, header included */
	__u32 rule_id;
	__u32 pid; /* process id as user space sees it (kernel tgid) */
	__u32 tid; /* thread id (kernel pid) */
	__u64 cgroup_id;
	__u64 ts_ns;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct assay_scope);
} scope SEC(".maps");

/* The active policy generation, 0 or 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct assay_settings);
} settings SEC(".maps");

/* Per-cgroup, per-second event budgets. A preallocated hash (safe to update
 * from tracing and LSM programs; an LRU hash updated from the trace path
 * hung Linux 6.1 in a soft lockup). Programs only ever touch the entry of
 * the current second, so user space deletes the entries of seconds that
 * are over (kernel.Instance.SweepRate) without racing them: entries of
 * removed cgroups go too, and the map holds about three seconds of active
 * cgroups. When it is full all the same, a cgroup without an entry gets no
 * budget: its events are counted as suppressed and aggregated (see
 * aggregate), never emitted under another cgroup's budget. The loader can
 * size it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct assay_rate_key);
	__type(value, struct assay_rate);
} rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct assay_counters);
} counters SEC(".maps");

/* The aggregation tables: AGG_PAIRS and AGG_RULES. The loader sizes and
 * installs them; user space swaps them to read them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct assay_agg_key);
		__type(value, struct assay_agg_val);
	});
} agg SEC(".maps");

/* Enforcement events (LSM and socket paths). The loader sizes it. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

/* Observation events (tracepoint path), apart so that a trace flood can
 * never crowd out an enforcement event. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} trace_events SEC(".maps");

static __always_inline struct assay_scope *get_scope(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scope, &zero);
}

/* policy_gen returns the active generation, or -1 (callers fail closed). */
static __always_inline int policy_gen(void)
{
	__u32 zero = 0;
	__u32 *gen = bpf_map_lookup_elem(&active, &zero);
	if (!gen || *gen > 1)
		return -1;
	return *gen;
}

static __always_inline struct assay_settings *get_settings(__u32 gen)
{
	return bpf_map_lookup_elem(&settings, &gen);
}

/* in_scope reports whether the current task's cgroup v2 is one of the scope
 * cgroups or below one: the ancestor at the scope's level must be the scope. */
static __always_inline int in_scope(void)
{
	struct assay_scope *s = get_scope();
	if (!s)
		return 0;
	if (s->scope_all)
		return 1;
#pragma unroll
	for (int i = 0; i < MAX_SCOPES; i++) {
		if (i >= s->nscopes)
			break;
		if (bpf_get_current_ancestor_cgroup_id(s->scope_level[i]) == s->scope_id[i])
			return 1;
	}
	return 0;
}

#define COUNT_DROPPED 0
#define COUNT_EMITTED 1
#define COUNT_SUPPRESSED 2
#define COUNT_UNAGGREGATED 3

static __always_inline void count(int path, int what)
{
	__u32 zero = 0;
	struct assay_counters *c = bpf_map_lookup_elem(&counters, &zero);
	if (!c)
		return;
	if (path < 0 || path >= NR_PATHS)
		return;
	if (what == COUNT_EMITTED)
		c->emitted[path]++;
	else if (what == COUNT_SUPPRESSED)
		c->suppressed[path]++;
	else if (what == COUNT_UNAGGREGATED)
		c->unaggregated[path]++;
	else
		c->dropped[path]++;
}

/* agg_count adds one event to table's entry for k; 0 when it could. */
static __always_inline int agg_count(void *table, const struct assay_agg_key *k, int dropped, __u64 now)
{
	struct assay_agg_val *v = bpf_map_lookup_elem(table, k);
	if (!v) {
		__u64 pid_tgid = bpf_get_current_pid_tgid();
		struct assay_agg_val fresh = {
			.suppressed = dropped ? 0 : 1,
			.dropped = dropped ? 1 : 0,
			.first_ns = now,
			.last_ns = now,
			.pid = pid_tgid >> 32,
			.tid = (__u32)pid_tgid,
		};
		bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
		if (bpf_map_update_elem(table, k, &fresh, BPF_NOEXIST) == 0)
			return 0;
		/* Another CPU inserted it first, or the table is full. */
		v = bpf_map_lookup_elem(table, k);
		if (!v)
			return -1;
	}
	if (dropped)
		__sync_fetch_and_add(&v->dropped, 1);
	else
		__sync_fetch_and_add(&v->suppressed, 1);
	v->last_ns = now;
	return 0;
}

/* aggregate counts an event that was not emitted (see assay_agg_key). */
static __always_inline void aggregate(int path, struct assay_agg_key *k, int dropped)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 slot = AGG_PAIRS;
	void *table = bpf_map_lookup_elem(&agg, &slot);
	if (table && agg_count(table, k, dropped, now) == 0)
		return;
	k->unrecorded = 1;
	k->protocol = 0;
	k->mapped = 0;
	k->port = 0;
	k->unspec = 0;
	k->dev = 0;
	k->ino = 0;
	__builtin_memset(k->addr, 0, sizeof(k->addr));
	slot = AGG_RULES;
	table = bpf_map_lookup_elem(&agg, &slot);
	if (table && agg_count(table, k, dropped, now) == 0)
		return;
	count(path, COUNT_UNAGGREGATED);
}

/* event_budget reports whether the current cgroup may emit one more event
 * in this second of CLOCK_MONOTONIC; when not, it counts the event as
 * suppressed. Decisions never depend on it: only reporting is limited.
 *
 * The bound is exact: every event adds one to its cgroup's count for the
 * second it read from the clock, atomically, and only those that found the
 * count below rate_limit are emitted. So each cgroup emits at most
 * rate_limit events per second (of bpf_ktime_get_ns). */
static __always_inline int event_budget(int path)
{
	struct assay_scope *s = get_scope();
	if (!s || !s->rate_limit)
		return 1;
	struct assay_rate_key key = {
		.cgroup_id = bpf_get_current_cgroup_id(),
		.second = bpf_ktime_get_ns() / 1000000000ULL,
	};
	struct assay_rate *r = bpf_map_lookup_elem(&rate, &key);
	if (!r) {
		struct assay_rate fresh = {.count = 1};
		if (bpf_map_update_elem(&rate, &key, &fresh, BPF_NOEXIST) == 0)
			return 1;
		/* Another CPU inserted it first, or the map is full. */
		r = bpf_map_lookup_elem(&rate, &key);
		if (!r)
			goto suppress;
	}
	if (__sync_fetch_and_add(&r->count, 1) < s->rate_limit)
		return 1;
suppress:
	count(path, COUNT_SUPPRESSED);
	return 0;
}

static __always_inline void fill_header(struct assay_event_header *h, __u8 kind, __u8 verdict, __u16 size, __u32 rule_id)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	h->kind = kind;
	h->verdict = verdict;
	h->size = size;
	h->rule_id = rule_id;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}
