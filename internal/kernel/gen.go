package kernel

// Regenerate the BPF object and its Go bindings with `make generate`
// (clang and llvm-strip needed). The outputs are committed, so `go build`
// needs neither; CI regenerates them and fails when they drift.
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target amd64,arm64 -type assay_settings -type assay_counters -type assay_event_header -type assay_net_event -type assay_file_event -type assay_trace_event -type assay_file_key -type assay_file_rule -type assay_ident -type assay_rate_key -type assay_agg_key -type assay_agg_val -type assay_lpm_v4_key -type assay_lpm_v6_key -type assay_net2_v4_key -type assay_net2_v6_key -type assay_dns_conf -type assay_dns_v4_key -type assay_dns_v6_key -type assay_dns_orig bpf bpf/assay.bpf.c -- -I./bpf -I./bpf/include -O2 -g -Wall -Werror
