#!/bin/busybox sh
# /init of the vmtest guest (PID 1). Packed into the initramfs by test/vm/run.sh.
#
# It mounts what the BPF-LSM tests need, loads the modules (loop, overlay, xfs, btrfs; virtio_blk
# on amd64), mounts the runtime image (amd64: /usr and /opt), checks that
# `bpf` is an active LSM, runs /lsm.test and prints exactly one result marker
#   ASSAY-VMTEST-RESULT: PASS
#   ASSAY-VMTEST-RESULT: FAIL rc=N
# which the host script looks for, then powers the guest off. If this script
# dies, the kernel panics (panic=-1 + -no-reboot end QEMU) and the missing
# marker fails the run.

export PATH=/bin
export HOME=/root TMPDIR=/tmp

finish() { # finish RC [reason]
	if [ "$1" -eq 0 ]; then
		echo "ASSAY-VMTEST-RESULT: PASS"
	else
		echo "ASSAY-VMTEST-RESULT: FAIL rc=$1${2:+ ($2)}"
	fi
	poweroff -f
	sleep 10 # poweroff -f does not return; never let PID 1 exit
	exit "$1"
}

mount -t devtmpfs devtmpfs /dev || finish 90 "mount devtmpfs"
# The kernel opens /dev/console before /init only if the node exists; make sure.
exec </dev/console >/dev/console 2>&1

m() { # m TYPE DIR [OPTS]: mount or fail the run
	mkdir -p "$2"
	mount -t "$1" ${3:+-o "$3"} "$1" "$2" || finish 90 "mount -t $1 $2"
}
m proc /proc
m sysfs /sys
m securityfs /sys/kernel/security
m cgroup2 /sys/fs/cgroup
m bpf /sys/fs/bpf
m tmpfs /tmp mode=1777
m tmpfs /run mode=0755
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || echo "vmtest-init: note: tracefs not mounted"

if [ -s /etc/vmtest/modules ]; then
	while read -r mod; do
		insmod "/lib/modules/$mod" || echo "vmtest-init: WARNING: insmod $mod failed"
	done </etc/vmtest/modules
fi

ip link set lo up || finish 91 "ip link set lo up"

# amd64: the runtime image (test/vm/run.sh) on the virtio disk, read-only: its
# usr/ at /usr and opt/ at /opt, the host's programs at their real paths.
if [ -e /etc/vmtest/runtime.env ]; then
	i=0
	while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	mkdir -p /mnt/runtime
	mount -t ext4 -o ro /dev/vda /mnt/runtime || finish 92 "mount the runtime image /dev/vda"
	mount -o bind /mnt/runtime/usr /usr || finish 92 "bind /usr"
	mount -o bind /mnt/runtime/opt /opt || finish 92 "bind /opt"
	set -a
	. /etc/vmtest/runtime.env
	set +a
fi

lsm=$(cat /sys/kernel/security/lsm)
echo "vmtest-init: kernel $(uname -r), $(nproc) CPUs, LSMs: $lsm"
case ",$lsm," in
*,bpf,*) ;;
*) finish 97 "bpf is not in /sys/kernel/security/lsm: $lsm" ;;
esac

# The go test timeout comes from the host (test/vm/run.sh: it grows with the suite).
timeout=400s
[ -s /etc/vmtest/timeout ] && read -r timeout </etc/vmtest/timeout
set -- -test.v -test.timeout "$timeout"
if [ -s /etc/vmtest/run ]; then
	read -r run </etc/vmtest/run
	set -- "$@" -test.run "$run"
	echo "vmtest-init: -test.run $run"
fi
# VMTEST_BENCH (make bench): run the matching benchmarks once each instead of the tests.
if [ -s /etc/vmtest/bench ]; then
	read -r bench </etc/vmtest/bench
	[ -s /etc/vmtest/bench.env ] && . /etc/vmtest/bench.env
	export BENCH_ROUNDS BENCH_QUICK
	set -- -test.v -test.timeout 1800s -test.run '^$' -test.bench "$bench" -test.benchtime 1x
	echo "vmtest-init: -test.bench $bench"
fi

scale=1
[ -s /etc/vmtest/timeout-scale ] && read -r scale </etc/vmtest/timeout-scale
export ASSAY_TIMEOUT_SCALE="$scale"

# Run from the package directory copy so relative testdata/ paths work.
cd /lsm
CI=true ASSAY_VM=1 ASSAY_BIN=/bin/assay ASSAY_EXT4_IMAGE=/images/ext4.img ASSAY_BTRFS_IMAGE=/images/btrfs.img.gz ASSAY_XFS_IMAGE=/images/xfs.img.gz ASSAY_MCP_TESTSERVER=/bin/mcp-testserver /lsm.test "$@"
rc=$?
cd /

if [ "$rc" -ne 0 ]; then
	echo "vmtest-init: ---- last kernel messages ----"
	dmesg | tail -n 40
	echo "vmtest-init: ----"
fi
finish "$rc"
