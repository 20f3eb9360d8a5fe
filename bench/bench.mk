# bench/bench.mk: `make bench`, included from the top-level Makefile
# (`include bench/bench.mk`; it needs GO, which the Makefile sets).
#
#   make bench                         every figure: host benchmarks, then the BPF LSM
#                                      figures in the QEMU guest; prints the table and
#                                      writes docs/BENCHMARKS.md (about 8 minutes)
#   make bench BENCH=Connect           only the host benchmarks matching the regex
#                                      (the VM part still runs; BENCH_VM= skips it)
#   make bench BENCH_ROUNDS=5          fewer rounds (default 9 on the host, 5 in the VM)
#   make bench BENCH_QUICK=1           a smoke run: fewer operations, short phases
#
#   make bench-deps                    only install the peers (nftables, bubblewrap, firejail)
#
# Needs root (BPF, cgroups). Results, logs and the binary under test go to
# .cache/bench/. See bench/bench.sh and docs/BENCHMARKS.md.

BENCH ?= .
BENCH_VM ?= LSM
BENCH_ROUNDS ?=
BENCH_QUICK ?=

# Including this file must not change the including Makefile's default goal.
bench_saved_default_goal := $(.DEFAULT_GOAL)

.PHONY: bench bench-deps
# The peers figure 8 compares with (nftables, bubblewrap, firejail), with apt.
bench-deps:
	bash scripts/bench-deps.sh

bench: bench-deps
	GO="$(GO)" BENCH="$(BENCH)" BENCH_VM="$(BENCH_VM)" BENCH_ROUNDS="$(BENCH_ROUNDS)" BENCH_QUICK="$(BENCH_QUICK)" \
		bash bench/bench.sh

.DEFAULT_GOAL := $(bench_saved_default_goal)
