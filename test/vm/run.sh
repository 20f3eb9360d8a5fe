#!/usr/bin/env bash
# Run Assay's BPF-LSM test suite (./test/lsm, build tag vmtest) in a QEMU guest.
#
#   bash test/vm/run.sh [go test -run regex]      (or: make vmtest VMTEST_RUN=regex)
#   VMTEST_ARCH=arm64 bash test/vm/run.sh ...     (or: make vmtest-arm64) an arm64 guest
#
# The host kernel refuses BPF LSM programs (EPERM); Debian's cloud kernel booted
# with lsm=...,bpf accepts them. This script:
#   1. installs its apt packages if missing (qemu-system-x86 or qemu-system-arm,
#      busybox-static e2fsprogs xz-utils),
#   2. fetches the current Debian cloud kernel with `apt-get download` (the version
#      linux-image-cloud-ARCH depends on; never pinned) and caches .deb and extracted
#      tree in .cache/vm[-arm64]/kernel/<package>_<version>/, so a warm run downloads nothing.
#      arm64 takes the kernel from <codename>-backports and busybox-static:arm64 from
#      <codename>, through a private apt configuration in the cache (the system's apt
#      sources and dpkg architectures are left alone): arm64 attaches BPF LSM programs
#      (BPF trampolines) only from Linux 6.4 on; bookworm's 6.1 answers ENOTSUPP,
#   3. builds static binaries for the guest's architecture: BUILD/assay (./cmd/assay) and
#      BUILD/lsm.test (./test/lsm), and BUILD/mcp-testserver
#      (./internal/mcptest/cmd/mcp-testserver, the MCP tests' server),
#   4. makes an 8 MiB ext4 image, packs an initramfs (busybox, test/vm/init.sh as /init,
#      binaries, the loop module, the image) and boots it under TCG (amd64:
#      qemu-system-x86_64, console ttyS0; arm64: qemu-system-aarch64 -M virt, console ttyAMA0),
#   5. tees the serial console to stdout and .cache/vm/last-run.log and exits non-zero
#      unless the guest printed "ASSAY-VMTEST-RESULT: PASS".
#
# Environment:
#   VMTEST_ARCH=amd64   the guest's architecture: amd64 or arm64
#   VMTEST_MIRROR=URL   the Debian mirror of the arm64 guest's private apt configuration
#                       (default http://deb.debian.org/debian)
#   VMTEST_NO_ASSAY=1   tolerate a missing ./cmd/assay (by default that is an error)
#   VMTEST_TIMEOUT=S    seconds before QEMU is killed. The default grows with the suite:
#                       the guest's go test timeout is 120 s + 30 s per top-level test in
#                       test/lsm (about 4 s each on an idle machine, 30 s for the slowest;
#                       a busy host slows TCG severalfold), QEMU's 120 s more (boot, poweroff).
#                       When set, the guest's go test times out 120 s before it (at least 60 s).
#   VMTEST_TIMEOUT_SCALE=N  multiplies the tests' hang guards (ASSAY_TIMEOUT_SCALE; default 1,
#                       3 for arm64: an emulated foreign CPU is several times slower)
#   VMTEST_CACHE=DIR    cache directory (default: <repo>/.cache/vm, <repo>/.cache/vm-arm64 for arm64)
#   VMTEST_RUN=regex    same as the first argument (the argument wins)
#   VMTEST_APPEND=...   extra kernel command-line arguments (e.g. loglevel=7)
#   VMTEST_BENCH=regex  run the matching benchmarks (-test.bench, once each) instead of the
#                       tests (make bench; BENCH_ROUNDS and BENCH_QUICK are passed on)
set -euo pipefail
# The whole script is one compound command: bash reads it completely before
# running it, so editing this file during a run cannot change that run.
{

die() { printf 'vmtest: ERROR: %s\n' "$*" >&2; exit 2; }
log() { printf 'vmtest: %s\n' "$*" >&2; }
now() { date +%s%N; }
secs() { # secs START_NS [END_NS]
	local end=${2:-$(now)}
	awk -v d=$((end - $1)) 'BEGIN { printf "%.1f", d / 1e9 }'
}

case "${1:-}" in
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
esac
[[ $# -le 1 ]] || die "usage: $0 [go test -run regex] (quote the regex)"
RUN_REGEX=${1:-${VMTEST_RUN:-}}
[[ $RUN_REGEX != *$'\n'* ]] || die "the -run regex must be a single line"

T_START=$(now)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
ARCH=${VMTEST_ARCH:-amd64}
case $ARCH in
amd64) CACHE=${VMTEST_CACHE:-$ROOT/.cache/vm} ;;
arm64) CACHE=${VMTEST_CACHE:-$ROOT/.cache/vm-arm64} ;;
*) die "VMTEST_ARCH=$ARCH: use amd64 or arm64" ;;
esac
BUILD=$CACHE/build
# Timeouts: the guest's go test first (it prints the stuck goroutines), then QEMU.
NTESTS=$(cat test/lsm/*_test.go | grep -c '^func Test' || true)
if [[ -n ${VMTEST_TIMEOUT:-} ]]; then
	TIMEOUT=$VMTEST_TIMEOUT
	GUEST_TIMEOUT=$((TIMEOUT - 120 > 60 ? TIMEOUT - 120 : 60))
else
	GUEST_TIMEOUT=$((120 + 30 * NTESTS))
	TIMEOUT=$((GUEST_TIMEOUT + 120))
fi
LOG=$CACHE/last-run.log
cd "$ROOT"
mkdir -p "$CACHE"

# One run at a time per cache (the build dir and log are shared).
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
	log "another vmtest run holds $CACHE/.lock; waiting"
	flock 9
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot apt-get"
	SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() {
	[[ $APT_UPDATED -eq 0 ]] || return 0
	log "apt-get update"
	"${SUDO[@]}" apt-get update -q >&2 || return 1
	APT_UPDATED=1
}

# The guest's packages (kernel, arm64 busybox) are only downloaded, never
# installed. amd64 takes them from the system's apt configuration; arm64 from
# a private one (its own sources, lists and architecture) in the cache.
GUEST_APT=()
GUEST_APT_UPDATED=0
if [[ $ARCH == arm64 ]]; then
	. /etc/os-release
	[[ -n ${VERSION_CODENAME:-} ]] || die "no VERSION_CODENAME in /etc/os-release: the arm64 guest needs Debian"
	APTDIR=$CACHE/apt
	mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
	MIRROR=${VMTEST_MIRROR:-http://deb.debian.org/debian}
	KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
	printf 'deb [signed-by=%s] %s %s main\ndeb [signed-by=%s] %s %s-backports main\n' \
		"$KEYRING" "$MIRROR" "$VERSION_CODENAME" "$KEYRING" "$MIRROR" "$VERSION_CODENAME" >"$APTDIR/sources.list.new"
	# A changed mirror or release invalidates the lists.
	if ! cmp -s "$APTDIR/sources.list.new" "$APTDIR/sources.list"; then
		mv "$APTDIR/sources.list.new" "$APTDIR/sources.list"
		rm -f "$APTDIR"/lists/*_Packages*
	else
		rm -f "$APTDIR/sources.list.new"
	fi
	GUEST_APT=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o APT::Architectures::=arm64
		-o "APT::Default-Release=$VERSION_CODENAME-backports")
fi
guest_apt_update() {
	if [[ ${#GUEST_APT[@]} -eq 0 ]]; then
		apt_update
		return
	fi
	[[ $GUEST_APT_UPDATED -eq 0 ]] || return 0
	log "apt-get update (private arm64 configuration in $APTDIR)"
	"${SUDO[@]}" apt-get "${GUEST_APT[@]}" update -q >&2 || return 1
	GUEST_APT_UPDATED=1
}
# Private lists that were never fetched, or are more than a day old, are refreshed first.
if [[ $ARCH == arm64 ]] && [[ -z $(find "$APTDIR/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 -print -quit) ]]; then
	guest_apt_update || log "WARNING: apt-get update failed; trying the lists at hand"
fi

# ---------------------------------------------------------------- 1. packages
ensure_packages() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	log "installing ${missing[*]}"
	local install=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}")
	"${install[@]}" >&2 || { apt_update && "${install[@]}" >&2; } || die "apt-get install ${missing[*]} failed"
}
# busybox-static, not busybox: the guest has no libc.
if [[ $ARCH == amd64 ]]; then
	ensure_packages qemu-system-x86 busybox-static e2fsprogs xz-utils btrfs-progs xfsprogs
	BUSYBOX=$(dpkg -L busybox-static | grep -m1 -E '/bin/busybox$') || die "busybox-static ships no busybox?"
else
	ensure_packages qemu-system-arm e2fsprogs xz-utils btrfs-progs xfsprogs
	BUSYBOX=$CACHE/busybox/bin/busybox
	if [[ ! -x $BUSYBOX ]]; then
		log "fetching busybox-static:arm64"
		rm -rf "$CACHE/busybox"
		mkdir -p "$CACHE/busybox/deb"
		chmod 0777 "$CACHE/busybox/deb" # apt's _apt sandbox user writes here
		(cd "$CACHE/busybox/deb" && apt-get "${GUEST_APT[@]}" download -q busybox-static:arm64 >&2) ||
			{ guest_apt_update && (cd "$CACHE/busybox/deb" && apt-get "${GUEST_APT[@]}" download -q busybox-static:arm64 >&2); } ||
			die "apt-get download busybox-static:arm64 failed"
		dpkg-deb -x "$(ls "$CACHE"/busybox/deb/*.deb)" "$CACHE/busybox/root"
		BB=$(find "$CACHE/busybox/root" -path '*/bin/busybox' | head -n1)
		[[ -n $BB ]] || die "busybox-static:arm64 ships no busybox?"
		mkdir -p "$CACHE/busybox/bin"
		cp "$BB" "$BUSYBOX"
	fi
fi
# The host runs the busybox of the host's architecture for --list and cpio.
HOST_BUSYBOX=$BUSYBOX
if [[ $ARCH != amd64 ]]; then
	ensure_packages busybox-static
	HOST_BUSYBOX=$(dpkg -L busybox-static | grep -m1 -E '/bin/busybox$') || die "busybox-static ships no busybox?"
fi

if ! command -v go >/dev/null; then
	[[ -x /usr/local/go/bin/go ]] || die "go not found (PATH or /usr/local/go/bin)"
	PATH=/usr/local/go/bin:$PATH
fi

# ---------------------------------------------------------------- 2. kernel
T_KERNEL=$(now)
META=linux-image-cloud-$ARCH
resolve_kernel() { # prints "<package> <version>" of the kernel the meta package depends on
	local pkg ver
	pkg=$(apt-cache "${GUEST_APT[@]}" depends "$META:$ARCH" 2>/dev/null |
		sed -n "s/^ *|\{0,1\}Depends: \(linux-image-[0-9][^ :]*-cloud-$ARCH\)\(:$ARCH\)\{0,1\}\$/\1/p" | head -n1)
	[[ -n $pkg ]] || return 1
	ver=$(apt-cache "${GUEST_APT[@]}" show --no-all-versions "$pkg:$ARCH" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
	[[ -n $ver ]] || return 1
	echo "$pkg $ver"
}
set_kernel() { # set_kernel "<package> <version>"
	read -r KPKG KVERSION <<<"$1"
	KDIR=$CACHE/kernel/${KPKG}_${KVERSION//:/%3a}
}
fetch_kernel() { # download and extract $KPKG=$KVERSION into $KDIR
	log "fetching kernel $KPKG $KVERSION"
	rm -rf "$KDIR"
	mkdir -p "$KDIR/deb"
	chmod 0777 "$KDIR/deb" # apt's _apt sandbox user writes here
	(cd "$KDIR/deb" && apt-get "${GUEST_APT[@]}" download -q "$KPKG:$ARCH=$KVERSION" >&2) || return 1
	dpkg-deb -x "$(ls "$KDIR"/deb/*.deb)" "$KDIR/root" || return 1
	touch "$KDIR/.complete"
	# Keep only the current kernel.
	find "$CACHE/kernel" -mindepth 1 -maxdepth 1 ! -path "$KDIR" -exec rm -rf {} +
}
if KREF=$(resolve_kernel) || { guest_apt_update && KREF=$(resolve_kernel); }; then
	set_kernel "$KREF"
	if [[ -f $KDIR/.complete ]]; then
		log "kernel $KPKG $KVERSION (cached)"
	elif ! fetch_kernel; then
		# Stale apt lists name a version the mirror no longer has: update, re-resolve.
		[[ $APT_UPDATED -eq 0 && $GUEST_APT_UPDATED -eq 0 ]] || die "apt-get download $KPKG=$KVERSION failed"
		guest_apt_update || die "apt-get update failed"
		KREF=$(resolve_kernel) || die "cannot resolve the dependency of $META"
		set_kernel "$KREF"
		[[ -f $KDIR/.complete ]] || fetch_kernel || die "apt-get download $KPKG=$KVERSION failed"
	fi
else
	# Offline and no apt lists: fall back to the newest kernel already cached.
	KDIR=$(ls -1td "$CACHE"/kernel/*/.complete 2>/dev/null | head -n1 | xargs -r dirname)
	[[ -n $KDIR ]] || die "cannot resolve the dependency of $META (apt lists?) and no kernel is cached"
	log "WARNING: cannot resolve $META; using cached $(basename "$KDIR")"
	KPKG=${KDIR##*/}
	KVERSION=${KPKG#*_}
	KPKG=${KPKG%%_*}
fi
KROOT=$KDIR/root
VMLINUZ=$(ls "$KROOT"/boot/vmlinuz-* 2>/dev/null | head -n1)
[[ -f $VMLINUZ ]] || die "no vmlinuz in $KROOT/boot"
KREL=${VMLINUZ##*/vmlinuz-}
MODDIR=""
for d in "$KROOT/lib/modules/$KREL" "$KROOT/usr/lib/modules/$KREL"; do
	[[ -d $d ]] && MODDIR=$d && break
done
[[ -n $MODDIR ]] || die "no modules directory for $KREL in $KROOT"
T_KERNEL_END=$(now)

# ---------------------------------------------------------------- 3. build
T_BUILD=$(now)
rm -rf "$BUILD"
mkdir -p "$BUILD"
export CGO_ENABLED=0 GOARCH=$ARCH
if compgen -G "cmd/assay/*.go" >/dev/null; then
	log "go build ./cmd/assay"
	go build -o "$BUILD/assay" ./cmd/assay
elif [[ ${VMTEST_NO_ASSAY:-} == 1 ]]; then
	log "WARNING: ./cmd/assay does not exist; VMTEST_NO_ASSAY=1, so the guest has no /bin/assay"
else
	die "./cmd/assay does not exist (set VMTEST_NO_ASSAY=1 to run without the assay binary)"
fi
log "go test -c -tags vmtest ./test/lsm"
go test -c -tags vmtest -o "$BUILD/lsm.test" ./test/lsm
[[ -f $BUILD/lsm.test ]] || die "go test -c produced no binary (no test files in ./test/lsm?)"
if [[ -d internal/mcptest/cmd/mcp-testserver ]]; then
	log "go build ./internal/mcptest/cmd/mcp-testserver"
	go build -o "$BUILD/mcp-testserver" ./internal/mcptest/cmd/mcp-testserver
fi
T_BUILD_END=$(now)

# ---------------------------------------------------------------- 4. initramfs
T_PACK=$(now)
STAGE=$BUILD/initramfs
mkdir -p "$STAGE"/{bin,dev,proc,sys,tmp,run,root,etc/vmtest,lib/modules,images,lsm}

# busybox and a symlink for every applet, so tests can exec losetup, mount, ...
cp "$BUSYBOX" "$STAGE/bin/busybox"
for applet in $("$HOST_BUSYBOX" --list); do
	[[ $applet == busybox ]] || ln -s busybox "$STAGE/bin/$applet"
done
install -m 0755 "$HERE/init.sh" "$STAGE/init"
install -m 0755 "$BUILD/lsm.test" "$STAGE/lsm.test"
[[ -f $BUILD/assay ]] && install -m 0755 "$BUILD/assay" "$STAGE/bin/assay"
[[ -f $BUILD/mcp-testserver ]] && install -m 0755 "$BUILD/mcp-testserver" "$STAGE/bin/mcp-testserver"
[[ -d test/lsm/testdata ]] && cp -a test/lsm/testdata "$STAGE/lsm/"
# amd64 (the host's architecture) only: the runtime image (runtime_image below),
# the host's /usr/bin/cat, node and python with their loader and libraries and the
# npm filesystem server, attached read-only as a virtio disk that /init mounts
# at /usr and /opt; here the /etc files they read (the loader cache, Debian's
# python configuration, OpenSSL's configuration, the time zone) and the
# merged-/usr symlinks (/lib64, /lib/<triplet> point into /usr). The policy v2
# tests start them under files.default: deny with the runtime baseline, at
# the host's real paths. The arm64 guest has no libc.
copy_at() { # copy_at PATH ROOT: copy PATH (a symlink as a symlink) to ROOT/PATH
	mkdir -p "$2$(dirname "$1")"
	cp -a "$1" "$2$1"
}
if [[ $ARCH == amd64 ]]; then
	mkdir -p "$STAGE/lib64" "$STAGE/usr" "$STAGE/opt"
	ln -sfn "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$STAGE/lib64/ld-linux-x86-64.so.2"
	ln -sfn /usr/lib/x86_64-linux-gnu "$STAGE/lib/x86_64-linux-gnu"
	[[ -f /etc/ld.so.cache ]] && cp /etc/ld.so.cache "$STAGE/etc/ld.so.cache"
	for f in /etc/python3* /etc/ssl/openssl.cnf /etc/localtime; do
		if [[ -e $f ]]; then copy_at "$f" "$STAGE"; fi
	done
fi
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$STAGE/etc/hosts"
echo 'root:x:0:0:root:/root:/bin/sh' >"$STAGE/etc/passwd"
echo 'root:x:0:' >"$STAGE/etc/group"
[[ -n $RUN_REGEX ]] && printf '%s\n' "$RUN_REGEX" >"$STAGE/etc/vmtest/run"
printf '%ss\n' "$GUEST_TIMEOUT" >"$STAGE/etc/vmtest/timeout"
SCALE=${VMTEST_TIMEOUT_SCALE:-$([[ $ARCH == arm64 ]] && echo 3 || echo 1)}
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || die "VMTEST_TIMEOUT_SCALE=$SCALE: give a positive integer"
echo "$SCALE" >"$STAGE/etc/vmtest/timeout-scale"
if [[ -n ${VMTEST_BENCH:-} ]]; then
	printf '%s\n' "$VMTEST_BENCH" >"$STAGE/etc/vmtest/bench"
	for v in BENCH_ROUNDS BENCH_QUICK; do
		if [[ -n ${!v:-} ]]; then printf '%s=%q\n' "$v" "${!v}"; fi
	done >"$STAGE/etc/vmtest/bench.env"
fi

# The loop module plus its dependencies, decompressed on the host (busybox insmod
# takes plain .ko). modules.dep is used when the package ships one (Debian's does
# not: depmod runs in postinst), otherwise the depends= fields of .modinfo.
mod_path() { # mod_path NAME -> path relative to MODDIR (loop -> kernel/drivers/block/loop.ko)
	local re=${1//[-_]/[-_]}
	grep -m1 -E "(^|/)${re}\.ko(\.xz|\.zst|\.gz)?$" "$MODDIR/modules.order" 2>/dev/null ||
		(cd "$MODDIR" && find kernel -regextype egrep -regex ".*/${re}\.ko(\.xz|\.zst|\.gz)?" | head -n1)
}
mod_decompress() { # mod_decompress FILE > plain .ko
	case $1 in
	*.xz) xz -dc "$1" ;;
	*.zst) zstd -qdc "$1" ;;
	*.gz) gzip -dc "$1" ;;
	*) cat "$1" ;;
	esac
}
MOD_ORDER=() # load order: dependencies first
mod_add() { # mod_add NAME
	local rel file dep deps
	rel=$(mod_path "$1")
	[[ -n $rel ]] || die "module $1 not found in $MODDIR"
	# modules.order names loop.ko; the package may ship loop.ko.xz.
	if [[ ! -f $MODDIR/$rel ]]; then
		local ext
		for ext in .xz .zst .gz; do
			[[ -f $MODDIR/$rel$ext ]] && rel=$rel$ext && break
		done
	fi
	[[ -f $MODDIR/$rel ]] || die "module $1: $MODDIR/$rel does not exist"
	file=$MODDIR/$rel
	for done_rel in "${MOD_ORDER[@]}"; do [[ $done_rel == "$rel" ]] && return 0; done
	if [[ -f $MODDIR/modules.dep ]]; then
		deps=$(sed -n "s|^${rel}:||p" "$MODDIR/modules.dep" | tr ' ' '\n' | sed -E 's|.*/||; s/\.ko(\.xz|\.zst|\.gz)?$//' | tac)
	else
		[[ $file != *.zst ]] || ensure_packages zstd
		deps=$(mod_decompress "$file" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' ')
	fi
	for dep in $deps; do mod_add "$dep"; done
	MOD_ORDER+=("$rel")
}
# The guest's modules: loop (if not built in), and the filesystems of the
# filesystem matrix (test/lsm/fs_test.go), each after its dependencies.
GUEST_MODULES=(overlay xfs btrfs)
# amd64: virtio_blk (with virtio_pci) for the runtime image's disk.
[[ $ARCH == amd64 ]] && GUEST_MODULES+=(virtio_pci virtio_blk)
if grep -qE '(^|/)loop\.ko' "$MODDIR/modules.builtin" 2>/dev/null; then
	log "loop is built into $KREL"
else
	GUEST_MODULES=(loop "${GUEST_MODULES[@]}")
fi
for m in "${GUEST_MODULES[@]}"; do
	grep -qE "(^|/)$m\.ko" "$MODDIR/modules.builtin" 2>/dev/null || mod_add "$m"
done
: >"$STAGE/etc/vmtest/modules"
for rel in "${MOD_ORDER[@]}"; do
	name=${rel##*/}
	name=${name%.xz} name=${name%.zst} name=${name%.gz}
	mod_decompress "$MODDIR/$rel" >"$STAGE/lib/modules/$name"
	echo "$name" >>"$STAGE/etc/vmtest/modules"
done
log "modules: ${MOD_ORDER[*]}"

# An ext4 image for device-number tests (loop device, major 7, in the guest).
mkdir -p "$BUILD/ext4-content"
echo "assay vmtest ext4 image" >"$BUILD/ext4-content/hello.txt"
truncate -s 8M "$STAGE/images/ext4.img"
mkfs.ext4 -q -F -L assay-vmtest -d "$BUILD/ext4-content" "$STAGE/images/ext4.img"
# btrfs (populated with -r; 128 MiB is its minimum) and xfs (300 MiB minimum) images,
# gzipped: the tests unpack them sparsely into the guest's tmpfs.
PATH=$PATH:/usr/sbin:/sbin
truncate -s 128M "$BUILD/btrfs.img"
mkfs.btrfs -q -f -L assay-vmtest -r "$BUILD/ext4-content" "$BUILD/btrfs.img" >/dev/null
gzip -1 -c "$BUILD/btrfs.img" >"$STAGE/images/btrfs.img.gz"
truncate -s 300M "$BUILD/xfs.img"
mkfs.xfs -q -f -L assay-vmtest "$BUILD/xfs.img"
gzip -1 -c "$BUILD/xfs.img" >"$STAGE/images/xfs.img.gz"
rm -f "$BUILD/btrfs.img" "$BUILD/xfs.img"

# The runtime image (amd64): a read-only ext4 image of the host's programs at
# their own paths, usr/ (cat, node, python3 with its standard library, and every
# library ldd names for them and python's extension modules, with their soname
# symlinks) and opt/mcp/ (the pinned npm filesystem server: internal/mcptest/npm,
# installed with `npm ci` into .cache/npm as the host tests do). QEMU attaches it
# as a virtio disk; /init mounts it and binds its usr/ at /usr and opt/ at /opt.
# Only what is touched is read, so its ~250 MB cost no guest RAM. Cached in
# $CACHE/runtime by the hash of its sources' names, sizes and times.
RTIMG=""
npm_fs_install() { # prints the directory of the pinned npm install (as internal/mcptest/npm.go)
	local spec=internal/mcptest/npm n hash dir npm
	npm=$(command -v npm) || return 1
	hash=$(for n in package.json package-lock.json; do
		printf '%s %d\n' "$n" "$(stat -c %s "$spec/$n")"
		cat "$spec/$n"
	done | sha256sum | cut -c1-16)
	dir=$ROOT/.cache/npm/fs-$hash
	if [[ ! -f $dir/.complete ]]; then
		mkdir -p "$ROOT/.cache/npm"
		(
			flock 8
			if [[ ! -f $dir/.complete ]]; then
				log "npm ci $spec into $dir"
				rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" && cp "$spec"/package.json "$spec"/package-lock.json "$dir.tmp/" &&
					(cd "$dir.tmp" && npm_config_update_notifier=false timeout 300 "$npm" ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) &&
					touch "$dir.tmp/.complete" && rm -rf "$dir" && mv "$dir.tmp" "$dir"
			fi
		) 8>"$ROOT/.cache/npm/.lock" || return 1
	fi
	echo "$dir"
}
runtime_image() {
	local node="" python pylib npmdir="" f p lib libs=() key img rt
	f=$(command -v node 2>/dev/null) && node=$(readlink -f "$f")
	if [[ -n $node && $node != /usr/* ]]; then
		log "WARNING: node is at $node, not under /usr: the guest gets no node"
		node=""
	fi
	[[ -n $node ]] || log "WARNING: no node on PATH: the guest's runtime baseline tests will fail (install Node.js 20+)"
	python=$(readlink -f /usr/bin/python3 2>/dev/null) || python=""
	pylib=/usr/lib/${python##*/}
	if [[ ! -x $python || ! -d $pylib ]]; then
		log "WARNING: no /usr/bin/python3 with $pylib: the guest gets no python (scripts/install-deps.sh installs it)"
		python="" pylib=""
	fi
	[[ -n $node ]] && npmdir=$(npm_fs_install) || { [[ -z $node ]] || log "WARNING: npm ci of the filesystem server failed: the guest gets no npm server"; npmdir=""; }
	# Every ELF's libraries, by the name ldd resolves (its directory resolved:
	# /lib -> /usr/lib on merged /usr), so that soname symlinks come along.
	local elves=(/usr/bin/cat $node $python)
	[[ -n $pylib ]] && elves+=("$pylib"/lib-dynload/*.so)
	for lib in $(ldd "${elves[@]}" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
		[[ -e $lib ]] || continue
		p=$(readlink -f "$(dirname "$lib")")/${lib##*/}
		libs+=("$p")
		[[ -L $p ]] && libs+=("$(readlink -f "$p")")
	done
	libs+=("$(readlink -f /lib64/ld-linux-x86-64.so.2)")
	key=$({
		echo "runtime-image v2"
		stat -c '%n %s %Y' /usr/bin/cat $node $python ${python:+/usr/bin/python3} "${libs[@]}" /usr/share/zoneinfo/Etc/UTC 2>/dev/null
		[[ -n $pylib ]] && find "$pylib" -printf '%P %s %T@\n' | LC_ALL=C sort
		echo "npm $npmdir"
	} | sha256sum | cut -c1-16)
	img=$CACHE/runtime/runtime-$key.img
	if [[ ! -f $img ]]; then
		log "building the runtime image ($img)"
		rt=$CACHE/runtime/tree
		rm -rf "$CACHE/runtime" && mkdir -p "$rt/usr" "$rt/opt/mcp"
		for f in /usr/bin/cat $node $python ${python:+/usr/bin/python3} "${libs[@]}"; do
			copy_at "$f" "$rt"
		done
		if [[ -e /usr/share/zoneinfo/Etc/UTC ]]; then copy_at /usr/share/zoneinfo/Etc/UTC "$rt"; fi
		# The standard library without what no program imports at run time:
		# its test suite, the static libpython (config-*), the bundled pip
		# wheels, 2to3, the pydoc topics, the GUI modules.
		local x excl=()
		for x in test 'config-*' dist-packages ensurepip lib2to3 pydoc_data idlelib tkinter turtledemo; do
			excl+=(--exclude="${pylib#/}/$x")
		done
		[[ -n $pylib ]] && (cd / && tar -cf - "${excl[@]}" "${pylib#/}") | tar -C "$rt" -xf -
		[[ -n $npmdir ]] && cp -a "$npmdir/node_modules" "$rt/opt/mcp/"
		local size files
		size=$(du -sm "$rt" | cut -f1)
		files=$(find "$rt" | wc -l)
		truncate -s "$((size * 11 / 10 + 16))M" "$img.tmp"
		mkfs.ext4 -q -F -O ^has_journal -N "$((files + 1024))" -L assay-runtime -d "$rt" "$img.tmp"
		mv "$img.tmp" "$img"
		rm -rf "$rt"
	fi
	RTIMG=$img
	{
		echo "ASSAY_NODE=$node"
		echo "ASSAY_PYTHON=${python:+/usr/bin/python3}"
		[[ -n $npmdir ]] && echo "ASSAY_NODE_FS_DIR=/opt/mcp"
	} >"$STAGE/etc/vmtest/runtime.env"
	log "runtime image $(du -h --apparent-size "$img" | cut -f1) (node ${node:-none}, python ${python:-none}${npmdir:+, npm filesystem server})"
}
if [[ $ARCH == amd64 ]]; then
	T_RT=$(now)
	runtime_image
	log "runtime image ready in $(secs "$T_RT")s"
fi

INITRD=$BUILD/initrd.cpio.gz
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | "$HOST_BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -1 >"$INITRD"
log "initramfs $(du -h "$INITRD" | cut -f1) (kernel $KREL)"
T_PACK_END=$(now)

# ---------------------------------------------------------------- 5. boot
case $ARCH in
amd64) QEMU=(qemu-system-x86_64 -accel tcg -cpu max) CONSOLE=ttyS0 ;;
arm64) QEMU=(qemu-system-aarch64 -M virt -accel tcg -cpu max) CONSOLE=ttyAMA0 ;;
esac
APPEND="console=$CONSOLE lsm=lockdown,capability,landlock,yama,bpf quiet panic=-1 oops=panic${VMTEST_APPEND:+ $VMTEST_APPEND}"
log "booting $KREL ($ARCH) under TCG${RUN_REGEX:+ with -test.run '$RUN_REGEX'}${VMTEST_BENCH:+ with -test.bench '$VMTEST_BENCH'} (timeout ${TIMEOUT}s, go test ${GUEST_TIMEOUT}s for $NTESTS tests)"
T_VM=$(now)
# --foreground keeps QEMU in our process group, so Ctrl-C reaches it. The sed drops
# CRs and SeaBIOS's terminal escapes (ESC c would reset the user's terminal).
set +e
DISKS=()
[[ -n $RTIMG ]] && DISKS=(-drive "file=$RTIMG,if=virtio,format=raw,readonly=on")
timeout --foreground -k 10 "$TIMEOUT" "${QEMU[@]}" -smp 2 -m 1G -nic none "${DISKS[@]}" \
	-kernel "$VMLINUZ" -initrd "$INITRD" -append "$APPEND" \
	-nographic -no-reboot </dev/null 2>&1 |
	sed -u -e 's/\r$//' -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' | tee "$LOG"
QEMU_RC=${PIPESTATUS[0]}
set -e
T_VM_END=$(now)

# ---------------------------------------------------------------- 6. verdict
CLEAN=$(tr -d '\r' <"$LOG") # (CRs already dropped; belt and braces)
RESULT=$(grep -ao 'ASSAY-VMTEST-RESULT: .*' <<<"$CLEAN" | tail -n1 || true)
count() { grep -acE "^ *--- $1: " <<<"$CLEAN" || true; }
NPASS=$(count PASS) NFAIL=$(count FAIL) NSKIP=$(count SKIP)

echo
log "kernel $KPKG $KVERSION ($KREL, $ARCH)"
log "times: kernel $(secs "$T_KERNEL" "$T_KERNEL_END")s, build $(secs "$T_BUILD" "$T_BUILD_END")s," \
	"pack $(secs "$T_PACK" "$T_PACK_END")s, VM $(secs "$T_VM" "$T_VM_END")s, total $(secs "$T_START")s"
log "serial log: $LOG"
if [[ $NFAIL -gt 0 ]]; then
	log "failed tests:"
	grep -aE '^ *--- FAIL: ' <<<"$CLEAN" | sed 's/^/vmtest:   /' >&2
fi
echo "vmtest: $NPASS passed, $NFAIL failed, $NSKIP skipped"

case $RESULT in
"ASSAY-VMTEST-RESULT: PASS")
	log "PASS"
	exit 0
	;;
"ASSAY-VMTEST-RESULT: FAIL"*)
	log "${RESULT#ASSAY-VMTEST-RESULT: }"
	exit 1
	;;
esac
why="QEMU exited with rc=$QEMU_RC"
[[ $QEMU_RC -eq 124 || $QEMU_RC -eq 137 ]] && why="timed out after ${TIMEOUT}s"
grep -aq 'Kernel panic' <<<"$CLEAN" && why="$why; the kernel panicked"
log "FAIL: no result marker from the guest ($why)"
exit 1
}
