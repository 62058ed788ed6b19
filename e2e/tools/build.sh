#!/usr/bin/env bash
# Builds the binaries the e2e lab runs into e2e/.cache/bin (gitignored):
#   kube-apiserver  from ./kube-apiserver (k8s.io/kubernetes v1.37.2 via the module proxy;
#                   cold build ~4 min and ~2.8 GB RAM, skipped while the binary is newer
#                   than that module's go.mod/go.sum)
#   vipcast         from the repository root (always rebuilt; Go's cache makes it cheap)
# Usage: e2e/tools/build.sh [kube-apiserver|vipcast]...   (default: both)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
e2e="$(dirname "$here")"
root="$(dirname "$e2e")"
bin="$e2e/.cache/bin"
mkdir -p "$bin"

k8s_version=v1.37.2

build_kube_apiserver() {
	local out="$bin/kube-apiserver" mod="$here/kube-apiserver"
	if [[ -x "$out" && "$out" -nt "$mod/go.mod" && "$out" -nt "$mod/go.sum" ]]; then
		echo "kube-apiserver: up to date ($out)"
		return
	fi
	echo "kube-apiserver: building $k8s_version (cold: ~4 min, ~2.8 GB RAM)..."
	local minor="${k8s_version#v1.}"; minor="${minor%%.*}"
	(cd "$mod" && go build -trimpath -o "$out.tmp" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
		k8s.io/kubernetes/cmd/kube-apiserver)
	mv "$out.tmp" "$out"
	echo "kube-apiserver: built $out"
}

build_vipcast() {
	echo "vipcast: building from $root"
	(cd "$root" && go build -trimpath -o "$bin/vipcast.tmp" ./cmd/vipcast)
	mv "$bin/vipcast.tmp" "$bin/vipcast"
	echo "vipcast: built $bin/vipcast"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(kube-apiserver vipcast)
for t in "${targets[@]}"; do
	case "$t" in
	kube-apiserver) build_kube_apiserver ;;
	vipcast) build_vipcast ;;
	*) echo "unknown target $t (want kube-apiserver or vipcast)" >&2; exit 2 ;;
	esac
done
