#!/usr/bin/env bash
# Chart tests: helm lint, helm template against golden files, and bad values
# files that the schema must reject naming the offending key.
#   charts/vipcast/tests/run.sh            run everything
#   UPDATE=1 charts/vipcast/tests/run.sh   rewrite the golden files
# HELM=path overrides the helm binary (default: bin/helm, built with
#   GOBIN=$PWD/bin go install helm.sh/helm/v3/cmd/helm@v3.22.0).
# Exits non-zero if any check fails.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
chart=$(dirname "$here")
root=$(cd "$chart/../.." && pwd)
HELM=${HELM:-$root/bin/helm}
VIPCAST=${VIPCAST:-$root/bin/vipcast}
KUBE_VERSION=${KUBE_VERSION:-1.37.0}
if [ ! -x "$HELM" ]; then
  echo "helm not found at $HELM; build it: GOBIN=$root/bin go install helm.sh/helm/v3/cmd/helm@v3.22.0" >&2
  exit 1
fi
pass=0; fail=0; failed=()
ok()  { pass=$((pass + 1)); printf '  ok    %s\n' "$1"; }
bad() { fail=$((fail + 1)); failed+=("$1"); printf '  FAIL  %s\n' "$1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/        /'; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

echo "== helm lint"
for v in "$chart/ci/test-values.yaml" "$here/values/full.yaml" "$here/values/nonroot-host-dirs.yaml"; do
  name="lint $(basename "$v")"
  if out=$("$HELM" lint "$chart" --strict --kube-version "$KUBE_VERSION" --values "$v" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
done
# Without values the chart must refuse: vips, bgp.asn and peers are required.
if out=$("$HELM" lint "$chart" --kube-version "$KUBE_VERSION" 2>&1); then
  bad "lint without values is rejected" "helm lint passed without vips/bgp.asn/peers"
else
  missing=""; for k in /vips /bgp/asn /peers; do grep -q "'$k'" <<<"$out" || missing="$missing $k"; done
  if [ -z "$missing" ]; then ok "lint without values is rejected (vips, bgp.asn, peers)"; else bad "lint without values names every required key" "missing:$missing"$'\n'"$out"; fi
fi

echo "== helm template vs golden (UPDATE=1 rewrites)"
for case in default:"$chart/ci/test-values.yaml" full:"$here/values/full.yaml" nonroot-host-dirs:"$here/values/nonroot-host-dirs.yaml"; do
  name=${case%%:*}; values=${case#*:}; golden="$here/golden/$name.yaml"
  if ! "$HELM" template vipcast "$chart" --namespace kube-system --kube-version "$KUBE_VERSION" --values "$values" >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
    bad "template $name" "$(cat "$tmp/$name.err")"; continue
  fi
  if [ "${UPDATE:-}" = 1 ]; then cp "$tmp/$name.yaml" "$golden"; ok "template $name (golden rewritten)"; continue; fi
  if [ ! -f "$golden" ]; then bad "template $name" "no golden file $golden; run with UPDATE=1"; continue; fi
  if d=$(diff -u "$golden" "$tmp/$name.yaml"); then ok "template $name"; else bad "template $name matches golden" "$d"$'\n'"(if intended: UPDATE=1 $0)"; fi
done

echo "== rendered objects"
# Properties the issue asks for, checked on the rendered default.
chk() { if grep -qE -- "$2" "$tmp/$1.yaml"; then ok "$1: $3"; else bad "$1: $3" "no match for: $2"; fi; }
chk default 'terminationGracePeriodSeconds: 15$' "grace = gshut wait 3s + drainPeriod 2s + 10"
chk full 'terminationGracePeriodSeconds: 16$' "grace = gshut wait 3s + ceil(2500ms) + 10"
chk default 'hostNetwork: true' "hostNetwork"
chk default 'dnsPolicy: ClusterFirstWithHostNet' "dnsPolicy"
chk default 'priorityClassName: system-node-critical' "priorityClassName"
chk default 'fieldPath: spec.nodeName' "VIPCAST_NODE_NAME from spec.nodeName"
chk default 'readOnlyRootFilesystem: true' "read-only root"
chk default 'type: RuntimeDefault' "seccomp RuntimeDefault"
chk full '- NET_BIND_SERVICE' "NET_BIND_SERVICE with listenPort 179"
chk default 'verbs: \[get, create, update\]' "status Lease Role: leases get/create/update only"
chk default 'statusLease: true' "config: kubernetes.statusLease on, in the release namespace"
if grep -qE '^kind: Role$|statusLease: true' "$tmp/nonroot-host-dirs.yaml"; then
  bad "statusLease.enabled false: no Role, no Lease"
else ok "statusLease.enabled false: no Role, no Lease"; fi
if grep -q NET_BIND_SERVICE "$tmp/default.yaml"; then bad "default: no NET_BIND_SERVICE without a listener"; else ok "default: no NET_BIND_SERVICE without a listener"; fi
chk full 'passwordFile: /etc/vipcast/secrets/bgp-md5/router1' "passwordFile points at the mounted Secret"
if grep -qi 's3cret\|password:' "$tmp/full.yaml"; then bad "full: no password in rendered objects"; else ok "full: no password in rendered objects"; fi
chk full 'kind: ServiceMonitor' "ServiceMonitor when enabled"
if grep -q 'kind: ServiceMonitor' "$tmp/default.yaml"; then bad "default: no ServiceMonitor"; else ok "default: no ServiceMonitor"; fi

echo "== the pods can start: every path vipcast writes is on a writable mount"
# podcheck reads the rendered pod spec and the config it mounts: the
# directories of api.socket and api.stateFile must be writable volumes the
# pod's UID can write (the root filesystem is read-only), and the ConfigMap
# must be mounted as a directory (no subPath) so updates reach vipcast.
if ! (cd "$root" && go build -o "$tmp/podcheck" ./charts/vipcast/tests/podcheck) 2>"$tmp/podcheck.err"; then
  bad "build podcheck" "$(cat "$tmp/podcheck.err")"
else
  for r in default full nonroot-host-dirs; do
    if out=$("$tmp/podcheck" "$tmp/$r.yaml" 2>&1); then ok "chart $r: $out"; else bad "chart $r: pod can start" "$out"; fi
  done
  # The static pod, root and non-root, from a config that needs no files.
  printf '%s\n' 'vips: [203.0.113.10/32]' 'bgp: {asn: 64512}' 'health: {insecureSkipVerify: true}' \
    'peers: [{address: 192.0.2.1, asn: 65000}]' > "$tmp/static-config.yaml"
  for flags in "" "--non-root" "--non-root --non-root-host-dirs"; do
    name="static-pod${flags:+ $flags}"
    # shellcheck disable=SC2086
    if ! env -i "$VIPCAST" manifest static-pod --config "$tmp/static-config.yaml" $flags >"$tmp/static.yaml" 2>"$tmp/static.err"; then
      bad "$name: rendered" "$(cat "$tmp/static.err")"
    elif out=$("$tmp/podcheck" -config "$tmp/static-config.yaml" "$tmp/static.yaml" 2>&1); then ok "$name: $out"
    else bad "$name: pod can start" "$out"; fi
  done
fi

echo "== the rendered config.yaml is accepted by vipcast validate"
# Outside a pod the mounted files (CA, token, MD5 keys) do not exist; any
# other problem means the chart renders something vipcast would refuse.
if [ ! -x "$VIPCAST" ]; then
  bad "vipcast validate" "$VIPCAST missing; run make build"
else
  for r in default full; do
    sed -n '/^kind: ConfigMap/,/^---/p' "$tmp/$r.yaml" | sed -n '/^  config.yaml: |/,/^[^ ]/{/^    /s/^    //p}' > "$tmp/$r-config.yaml"
    # VIPCAST_API_HEALTHLISTEN as the DaemonSet sets it from status.podIP.
    out=$(env -i VIPCAST_NODE_NAME=cp-1 VIPCAST_API_HEALTHLISTEN='[192.0.2.11]:9179' "$VIPCAST" validate -c "$tmp/$r-config.yaml" 2>&1 || true)
    other=$(grep '^  - ' <<<"$out" | grep -v 'cannot be read\|is not usable' || true)
    if [ ! -s "$tmp/$r-config.yaml" ]; then
      bad "$r: config.yaml extracted from the ConfigMap"
    elif [ -n "$other" ]; then
      bad "$r: vipcast validate accepts the rendered config" "$other"
    else
      ok "$r: vipcast validate accepts the rendered config (mounted files aside)"
    fi
  done
fi

echo "== bad values must be rejected, naming the key"
for f in "$here"/bad/*.yaml; do
  name="bad/$(basename "$f")"
  want=$(sed -n 's/^# expect: //p' "$f" | head -1)
  if [ -z "$want" ]; then bad "$name" "no '# expect: KEY' line"; continue; fi
  if out=$("$HELM" template x "$chart" --kube-version "$KUBE_VERSION" -f "$chart/ci/test-values.yaml" -f "$f" 2>&1 >/dev/null); then
    bad "$name" "accepted; the schema must reject it"
  elif grep -q "values don't meet the specifications" <<<"$out" && grep -qF -- "$want" <<<"$out"; then
    ok "$name (mentions $want)"
  else
    bad "$name" "rejected, but not by the schema naming '$want':"$'\n'"$out"
  fi
done

echo
if [ "$fail" -eq 0 ]; then
  echo "chart tests: all $pass passed"
else
  echo "chart tests: $fail FAILED, $pass passed:"; printf '  - %s\n' "${failed[@]}"
  exit 1
fi
