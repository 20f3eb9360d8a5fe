#!/usr/bin/env bash
# Run the amd64 and the arm64 guest suites at the same time (make vmtest-both,
# part of make test). Each guest's go test runs one test at a time, which keeps
# about one host core busy, so on a 2-core machine the two guests overlap
# instead of queueing: the wall time is the longer guest's, not the sum.
#
# The amd64 guest's console streams to stdout; the arm64 guest's is collected
# (and in .cache/vm-arm64/last-run.log) and printed, each line prefixed with
# "arm64| ", when it ends. Exits non-zero if either guest failed.
#
#   VMTEST_RUN         the amd64 guest's -run regex (default: every test)
#   VMTEST_ARM64_RUN   the arm64 guest's (default: test/vm/vm.mk's set)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
MAKE=${MAKE:-make}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
# The arm64 guest runs as a job of its own process group (set -m), so that
# an interrupted or failing run can end it, QEMU included, by its group.
set -m
"$MAKE" --no-print-directory vmtest-arm64 >"$out" 2>&1 &
arm=$!
set +m
trap 'kill -- -"$arm" 2>/dev/null; rm -f "$out"' EXIT
trap 'exit 130' INT TERM
"$MAKE" --no-print-directory vmtest
amd_rc=$?
amd_end=$(date +%s)
wait "$arm"
arm_rc=$?
trap 'rm -f "$out"' EXIT
sed 's/^/arm64| /' "$out"
echo "vmtest-both: amd64 guest rc=$amd_rc (done after $((amd_end - start))s), arm64 guest rc=$arm_rc; total $(($(date +%s) - start))s"
[[ $amd_rc -eq 0 && $arm_rc -eq 0 ]]
