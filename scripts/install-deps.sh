#!/usr/bin/env bash
# Installs what building, regenerating and testing Assay needs on a fresh
# Debian 12 machine (as root). Safe to run again: it installs only what is
# missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang || need+=(clang)
have llvm-strip || need+=(llvm)
have qemu-system-x86_64 || need+=(qemu-system-x86)
have qemu-system-aarch64 || need+=(qemu-system-arm)
[ -x /bin/busybox ] || need+=(busybox-static)
have mkfs.ext4 || need+=(e2fsprogs)
have xz || need+=(xz-utils)
have mkfs.btrfs || [ -x /usr/sbin/mkfs.btrfs ] || [ -x /sbin/mkfs.btrfs ] || need+=(btrfs-progs)
have mkfs.xfs || [ -x /usr/sbin/mkfs.xfs ] || [ -x /sbin/mkfs.xfs ] || need+=(xfsprogs)
have make || need+=(make)
have podman || need+=(podman)   # test/container
[ -x /usr/sbin/runc ] || need+=(runc)
have git || need+=(git)
have bpftool || need+=(bpftool)
have cpio || true
# Debian's python3 (with its standard library: ssl, json): test/run's and the
# guest's runtime baseline tests start /usr/bin/python3 (test/vm/run.sh puts
# it on the amd64 guest's runtime image). Node.js 20+ (node, npm) must be on
# the machine already (Debian 12's nodejs is 18).
dpkg-query -W -f='${Status}' python3 2>/dev/null | grep -q 'ok installed' || need+=(python3)

# The arm64 guest (make vmtest-arm64) also needs Debian's arm64 cloud kernel
# (from backports) and busybox-static:arm64: test/vm/run.sh downloads them
# (never installs them) through a private apt configuration in its cache.
if [ ${#need[@]} -gt 0 ]; then
	echo "install-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
		apt-get update -qq
		apt-get install -y -qq "${need[@]}"
	}
fi

if ! have go; then
	if [ -x /usr/local/go/bin/go ]; then
		echo "install-deps: Go is at /usr/local/go/bin; add it to PATH"
	else
		echo "install-deps: Go 1.26 is needed (https://go.dev/dl/)" >&2
		exit 1
	fi
fi
