#!/usr/bin/env bash
# Builds the binaries the e2e lab runs into e2e/.cache/bin (gitignored):
#   kube-apiserver  from ./kube (k8s.io/kubernetes v1.37.2 via the module proxy;
#                   cold build ~4 min and ~2.8 GB RAM, skipped while the binary is newer
#                   than that module's go.mod/go.sum)
#   kube            kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
#                   kubectl from the same module, in one `go build` so they share its
#                   cache (cold ~9 min on a loaded 2-core host; the cluster lab needs them),
#                   and vipcast-e2e-client (./kube/vipcast-e2e-client: client-go through the VIP)
#   vipcast         from the repository root (always rebuilt; Go's cache makes it cheap)
# Usage: e2e/tools/build.sh [kube-apiserver|kube|vipcast]...   (default: kube-apiserver vipcast)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
e2e="$(dirname "$here")"
root="$(dirname "$e2e")"
bin="$e2e/.cache/bin"
mkdir -p "$bin"

k8s_version=v1.37.2

kube_mod="$here/kube"
kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

# build_kube CMD... builds the given k8s.io/kubernetes commands into $bin,
# skipping those newer than the module's go.mod and go.sum.
build_kube() {
	local stale=() c
	for c in "$@"; do
		local out="$bin/$c"
		if [[ -x "$out" && "$out" -nt "$kube_mod/go.mod" && "$out" -nt "$kube_mod/go.sum" ]]; then
			echo "$c: up to date ($out)"
		else
			stale+=("$c")
		fi
	done
	[[ ${#stale[@]} -gt 0 ]] || return 0
	echo "${stale[*]}: building $k8s_version (cold: ~4 min for kube-apiserver, ~9 min for all, ~2.8 GB RAM)..."
	local minor="${k8s_version#v1.}"; minor="${minor%%.*}"
	local tmp pkgs=()
	tmp="$(mktemp -d "$bin/.kube.XXXXXX")"
	for c in "${stale[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	# One go build with -o DIR builds every command into DIR, sharing the
	# compilation of their common packages.
	(cd "$kube_mod" && go build -trimpath -o "$tmp/" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
		"${pkgs[@]}")
	for c in "${stale[@]}"; do
		mv "$tmp/$c" "$bin/$c"
		echo "$c: built $bin/$c"
	done
	rmdir "$tmp"
}

# build_client builds the lab's client-go program (same module, same cache)
# unless it is newer than the module and its source.
build_client() {
	local out="$bin/vipcast-e2e-client" src="$kube_mod/vipcast-e2e-client/main.go"
	if [[ -x "$out" && "$out" -nt "$kube_mod/go.mod" && "$out" -nt "$kube_mod/go.sum" && "$out" -nt "$src" ]]; then
		echo "vipcast-e2e-client: up to date ($out)"
		return 0
	fi
	echo "vipcast-e2e-client: building"
	(cd "$kube_mod" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" ./vipcast-e2e-client)
	mv "$out.tmp" "$out"
	echo "vipcast-e2e-client: built $out"
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
	kube-apiserver) build_kube kube-apiserver ;;
	kube) build_kube "${kube_cmds[@]}" && build_client ;;
	vipcast) build_vipcast ;;
	*) echo "unknown target $t (want kube-apiserver, kube or vipcast)" >&2; exit 2 ;;
	esac
done
