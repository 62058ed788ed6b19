#!/usr/bin/env bash
# Install the chart with tests/values/full.yaml into an existing apiserver,
# check that the release is deployed and that every object it renders
# exists, then uninstall and check that they are gone.
#   charts/vipcast/tests/install.sh KUBECONFIG [NAMESPACE]   (default kube-system)
# HELM and KUBECTL override the binaries (default bin/helm, /usr/bin/kubectl).
# No kubelet is needed: only API objects are checked. Without the
# ServiceMonitor CRD (monitoring.coreos.com) the ServiceMonitor is disabled.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 KUBECONFIG [NAMESPACE]" >&2; exit 2; }
export KUBECONFIG=$1
ns=${2:-kube-system}
here=$(cd "$(dirname "$0")" && pwd); chart=$(dirname "$here"); root=$(cd "$chart/../.." && pwd)
HELM=${HELM:-$root/bin/helm}; KUBECTL=${KUBECTL:-/usr/bin/kubectl}
release=vipcast-install-test
fail=0
step() { printf '== %s\n' "$*"; }
ok()   { printf '  ok    %s\n' "$*"; }
bad()  { printf '  FAIL  %s\n' "$*"; fail=1; }

step "apiserver"
"$KUBECTL" version -o yaml >/dev/null || { echo "cannot reach the apiserver with $KUBECONFIG" >&2; exit 1; }
"$KUBECTL" get namespace "$ns" >/dev/null 2>&1 || "$KUBECTL" create namespace "$ns"
extra=()
if "$KUBECTL" get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1; then
  ok "ServiceMonitor CRD present: ServiceMonitor enabled"
else
  extra=(--set serviceMonitor.enabled=false); ok "no ServiceMonitor CRD: serviceMonitor.enabled=false"
fi

cleanup() {
  "$HELM" uninstall "$release" -n "$ns" --wait >/dev/null 2>&1 || true
  "$KUBECTL" -n "$ns" delete secret bgp-md5 other-md5 --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "secrets the values reference (the chart never creates them)"
"$KUBECTL" -n "$ns" create secret generic bgp-md5 --from-literal=router1=s3cret1 --from-literal=router2=s3cret2 --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" -n "$ns" create secret generic other-md5 --from-literal=v6.key=s3cret3 --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
ok "bgp-md5, other-md5"

step "helm install"
"$HELM" install "$release" "$chart" -n "$ns" -f "$here/values/full.yaml" "${extra[@]}"
status=$("$HELM" status "$release" -n "$ns" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')
[ "$status" = deployed ] && ok "helm status: deployed" || bad "helm status: $status"

step "every rendered object exists"
objs=$("$HELM" get manifest "$release" -n "$ns" | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d: print(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", ""))')
[ -n "$objs" ] || bad "helm get manifest returned no objects"
while read -r kind name objns; do
  if [ -n "$objns" ]; then args=(-n "$objns"); else args=(); fi
  if "$KUBECTL" get "${args[@]}" "$kind" "$name" >/dev/null 2>&1; then ok "$kind $objns/$name"; else bad "$kind $objns/$name missing"; fi
done <<<"$objs"
# The ConfigMap holds paths, never keys.
if "$KUBECTL" -n "$ns" get configmap apivip -o yaml | grep -q 's3cret'; then bad "ConfigMap contains a key"; else ok "ConfigMap has no key"; fi

step "helm uninstall"
"$HELM" uninstall "$release" -n "$ns" --wait
while read -r kind name objns; do
  if [ -n "$objns" ]; then args=(-n "$objns"); else args=(); fi
  if "$KUBECTL" get "${args[@]}" "$kind" "$name" >/dev/null 2>&1; then bad "$kind $objns/$name still there"; else ok "$kind $objns/$name gone"; fi
done <<<"$objs"

echo
if [ "$fail" = 0 ]; then echo "install test: passed"; else echo "install test: FAILED"; exit 1; fi
