// SPDX-License-Identifier: GPL-2.0
/* Assay's kernel side: one object, three paths.
 *   net.h   - cgroup connect4/6, sendmsg4/6 (socket path)
 *   dns.h   - the DNS redirect (recvmsg4/6) and learned addresses
 *   file.h  - BPF LSM file rules: open, exec, mmap, changes, Unix sockets (LSM path)
 *   trace.h - tp_btf sys_exit, sched_process_exec (tracepoint path)
 *   observe.h - `assay learn`'s observation in the LSM hooks
 * The loader picks the programs a policy needs; the others are never loaded. */
#include "common.h"
#include "net.h"
#include "file.h"
#include "trace.h"
#include "observe.h"

char LICENSE[] SEC("license") = "GPL";

/* Keep the record layouts in BTF so bpf2go emits their Go mirrors. */
const struct assay_event_header *unused_event_header __attribute__((unused));
const struct assay_net_event *unused_net_event __attribute__((unused));
const struct assay_file_event *unused_file_event __attribute__((unused));
const struct assay_trace_event *unused_trace_event __attribute__((unused));
const struct assay_lpm_v4_key *unused_lpm_v4_key __attribute__((unused));
const struct assay_lpm_v6_key *unused_lpm_v6_key __attribute__((unused));
const struct assay_file_key *unused_file_key __attribute__((unused));
const struct assay_file_rule *unused_file_rule __attribute__((unused));
const struct assay_ident *unused_ident __attribute__((unused));
const struct assay_rate *unused_rate __attribute__((unused));
const struct assay_net2_v4_key *unused_net2_v4_key __attribute__((unused));
const struct assay_net2_v6_key *unused_net2_v6_key __attribute__((unused));
const struct assay_dns_conf *unused_dns_conf __attribute__((unused));
const struct assay_dns_v4_key *unused_dns_v4_key __attribute__((unused));
const struct assay_dns_v6_key *unused_dns_v6_key __attribute__((unused));
const struct assay_dns_orig *unused_dns_orig __attribute__((unused));
const struct assay_rate_key *unused_rate_key __attribute__((unused));
const struct assay_agg_key *unused_agg_key __attribute__((unused));
const struct assay_agg_val *unused_agg_val __attribute__((unused));
