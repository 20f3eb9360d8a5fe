#!/usr/bin/env bash
# Installs what `make bench` needs beyond scripts/install-deps.sh: the
# peers it is compared with (nftables, bubblewrap, firejail). Debian 12,
# as root; installs only what is missing. Not part of `make test` (CI).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have nft || need+=(nftables)
have bwrap || need+=(bubblewrap)
have firejail || need+=(firejail)
if [ ${#need[@]} -gt 0 ]; then
	echo "bench-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
		apt-get update -qq
		apt-get install -y -qq "${need[@]}"
	}
fi
