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

struct assay_rate {
	__u64 window; /* second (CLOCK_MONOTONIC) the count is for */
	__u64 count;
};

struct assay_counters {
	__u64 emitted[NR_PATHS];
	__u64 dropped[NR_PATHS];
	__u64 suppressed[NR_PATHS];
};

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

/* Per-cgroup event budget. A preallocated hash (safe to update from
 * tracing and LSM programs); when it is full, cgroups without an entry
 * share the budget of key 0. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct assay_rate);
} rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct assay_counters);
} counters SEC(".maps");

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
	else
		c->dropped[path]++;
}

/* event_budget reports whether the current cgroup may emit one more event
 * this second; when not, it counts the event as suppressed. Decisions never
 * depend on it: only reporting is limited. The window reset races benignly
 * (a few events more in a second, never fewer). */
static __always_inline int event_budget(int path)
{
	struct assay_scope *s = get_scope();
	if (!s || !s->rate_limit)
		return 1;
	__u64 cg = bpf_get_current_cgroup_id();
	__u64 now = bpf_ktime_get_ns() / 1000000000ULL;
	struct assay_rate *r = bpf_map_lookup_elem(&rate, &cg);
	if (!r) {
		struct assay_rate fresh = {.window = now, .count = 1};
		if (bpf_map_update_elem(&rate, &cg, &fresh, BPF_NOEXIST) == 0)
			return 1;
		r = bpf_map_lookup_elem(&rate, &cg);
		if (!r) {
			__u64 shared = 0;
			bpf_map_update_elem(&rate, &shared, &fresh, BPF_NOEXIST);
			r = bpf_map_lookup_elem(&rate, &shared);
			if (!r)
				return 1;
		}
	}
	if (r->window != now) {
		r->window = now;
		r->count = 0;
	}
	if (__sync_fetch_and_add(&r->count, 1) >= s->rate_limit) {
		count(path, COUNT_SUPPRESSED);
		return 0;
	}
	return 1;
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
