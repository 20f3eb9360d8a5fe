#!/usr/bin/env bash
# bench/bench.sh: what `make bench` runs (see bench/bench.mk).
#
#   1. builds ./cmd/assay into .cache/bench/assay (the binary every host figure runs);
#   2. runs the host benchmarks (go test ./bench -bench "$BENCH" -benchtime 1x: each
#      benchmark does its own interleaved rounds) with rows to .cache/bench/host.jsonl;
#   3. runs the BPF LSM benchmarks in the QEMU guest (VMTEST_BENCH="$BENCH_VM" test/vm/run.sh),
#      whose rows arrive as marker lines in .cache/bench/vm.log;
#   4. writes docs/BENCHMARKS.md and prints the table (go run ./bench/cmd/benchreport).
#
# A failed step is reported and the document is still written from what was measured.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
cd "$ROOT"
GO=${GO:-go}
if ! command -v "$GO" >/dev/null; then
	PATH=/usr/local/go/bin:$PATH
fi
OUT=$ROOT/.cache/bench
mkdir -p "$OUT"
rm -f "$OUT"/host.jsonl "$OUT"/host.log "$OUT"/vm.log
log() { printf 'bench: %s\n' "$*" >&2; }
status=0
T0=$(date +%s)

log "go build ./cmd/assay"
"$GO" build -o "$OUT/assay" ./cmd/assay || { log "build failed"; exit 1; }

# The BPF object without the socket path's verdict cache, for the "before"
# rows of figure 1 measured in the same run (BENCH_NOCACHE_OBJ).
EBPF_ARCH=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
NOCACHE=$OUT/assay-nocache.o
if clang -target bpfel -D__TARGET_ARCH_$EBPF_ARCH -DASSAY_NO_VCACHE -I internal/kernel/bpf -I internal/kernel/bpf/include \
	-O2 -g -Wall -Werror -c internal/kernel/bpf/assay.bpf.c -o "$NOCACHE" && llvm-strip -g "$NOCACHE"; then
	export BENCH_NOCACHE_OBJ=$NOCACHE
else
	log "could not build the object without the verdict cache: figure 1 has no before rows"
fi

# The machine's load, recorded beside the figures (2 CPUs shared: a busy
# machine moves absolute figures; paired ratios much less).
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "host benchmarks (-bench '${BENCH:-.}')"
ASSAY_BIN=$OUT/assay BENCH_OUT=$OUT/host.jsonl BENCH_ROUNDS=${BENCH_ROUNDS:-} BENCH_QUICK=${BENCH_QUICK:-} \
	"$GO" test ./bench -run '^$' -bench "${BENCH:-.}" -benchtime 1x -timeout 40m -v 2>&1 | tee "$OUT/host.log" |
	grep -E --line-buffered '^(Benchmark|--- |FAIL|ok|panic)|_test\.go:[0-9]+: [0-9]' || true
[[ ${PIPESTATUS[0]} -eq 0 ]] || { log "host benchmarks failed: see $OUT/host.log"; status=1; }
T1=$(date +%s)
LOAD_HOST=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ -n ${BENCH_VM:-} ]]; then
	log "BPF LSM benchmarks in the QEMU guest (-bench '$BENCH_VM'; serial log in $OUT/vm.log)"
	# The VM rounds default to 5 (each starts a monitor with 100k rules under TCG).
	VMTEST_BENCH=$BENCH_VM VMTEST_TIMEOUT=${VMTEST_TIMEOUT:-1500} BENCH_ROUNDS=${BENCH_ROUNDS:-} BENCH_QUICK=${BENCH_QUICK:-} \
		bash test/vm/run.sh >"$OUT/vm.log" 2>&1
	rc=$?
	grep -a 'ASSAY-BENCH-ROW' "$OUT/vm.log" | sed 's/^ASSAY-BENCH-ROW: /  vm: /' | cut -c1-160 >&2
	[[ $rc -eq 0 ]] || { log "VM benchmarks failed (rc=$rc): see $OUT/vm.log"; tail -n 15 "$OUT/vm.log" >&2; status=1; }
fi
T2=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

log "writing docs/BENCHMARKS.md"
"$GO" run ./bench/cmd/benchreport -host "$OUT/host.jsonl" -vm "$OUT/vm.log" -assay "$OUT/assay" \
	-durations "host=$((T1 - T0))s,vm=$((T2 - T1))s" \
	-load "start $LOAD_START; after the host part $LOAD_HOST; after the guest part $LOAD_END" -o docs/BENCHMARKS.md || status=1
log "done in $(($(date +%s) - T0))s"
exit $status
