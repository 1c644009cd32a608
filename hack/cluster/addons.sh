#!/usr/bin/env bash
# Cluster add-ons: the local-volume provisioner (a node process) with the default
# StorageClass, and CoreDNS (a Deployment behind the kube-dns Service at $DNS_IP).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/common.sh"
KUBECTL=("$RUN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")

ADDONS_BIN="$("$HERE/build-addons.sh" | tail -1)"
"$REPO_ROOT/images/build.sh" coredns

log "applying add-on manifests (CoreDNS, StorageClass, RBAC)"
sed -e "s/@DNS_IP@/$DNS_IP/g" -e "s/@CLUSTER_DOMAIN@/$CLUSTER_DOMAIN/g" "$HERE/addons.yaml" \
  | "${KUBECTL[@]}" apply -f - >&2

if ! pid_alive local-provisioner; then
  log "starting local-provisioner (volumes under $RUN/volumes)"
  setsid "$ADDONS_BIN/local-provisioner" --kubeconfig "$RUN/provisioner.kubeconfig" \
    --root "$RUN/volumes" --node "$NODE_NAME" >>"$RUN/logs/local-provisioner.log" 2>&1 </dev/null &
  record_pid local-provisioner $!
fi

log "waiting for CoreDNS"
"${KUBECTL[@]}" -n kube-system rollout status deployment/coredns --timeout=120s >&2
