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
have make || need+=(make)
have git || need+=(git)
have bpftool || need+=(bpftool)
have cpio || true

# The arm64 guest (make vmtest-arm64) boots Debian's arm64 cloud kernel with
# an arm64 busybox-static: both are fetched with `apt-get download` (never
# installed), which needs the arm64 package lists.
updated=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "install-deps: adding the arm64 dpkg architecture"
	dpkg --add-architecture arm64
	apt-get update -qq
	updated=1
fi

if [ ${#need[@]} -gt 0 ]; then
	echo "install-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
		[ "$updated" = 1 ] || apt-get update -qq
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
