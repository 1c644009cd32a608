#!/usr/bin/env bash
# `make run`: the operator in the foreground against a real API server.
# Steps:
#   1. If $KUBECONFIG (or ~/.kube/config) reaches a cluster, use it.
#   2. Otherwise start the embedded control plane (etcd + kube-apiserver + controller-manager)
#      from hack/controlplane.py under $DBMIGRATE_CACHE/run, stopped again on exit.
#   3. Install the CRD, print the kubeconfig path, run `python -m dbmigrate`.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}"
BIN="$(bash hack/k8s-bins.sh 2>/dev/null | tail -n1)"
KUBECTL="$BIN/kubectl"
cp_pid=""

cleanup() {
  if [[ -n "$cp_pid" ]] && kill -0 "$cp_pid" 2>/dev/null; then
    echo "stopping the embedded control plane..."
    kill "$cp_pid"; wait "$cp_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [[ -n "${KUBECONFIG:-}" || -f "$HOME/.kube/config" ]] && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  echo "using the cluster of ${KUBECONFIG:-$HOME/.kube/config}"
  export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"
else
  dir="$CACHE/run"
  rm -rf "$dir"; mkdir -p "$dir"
  echo "no cluster answers through \$KUBECONFIG: starting an embedded control plane in $dir"
  .venv/bin/python hack/controlplane.py up --dir "$dir" > "$dir/controlplane.out" 2>&1 &
  cp_pid=$!
  for _ in $(seq 1 240); do
    grep -q "^export KUBECONFIG" "$dir/controlplane.out" 2>/dev/null && break
    kill -0 "$cp_pid" 2>/dev/null || { cat "$dir/controlplane.out"; echo "control plane failed to start"; exit 1; }
    sleep 0.5
  done
  export KUBECONFIG="$dir/admin.kubeconfig"
fi

"$KUBECTL" apply --server-side -f crds/ >/dev/null
for _ in $(seq 1 120); do  # `kubectl wait` fails instead of waiting while the CRD has no conditions
  [[ "$("$KUBECTL" get crd/migrations.dbmigrate.dev -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" == True ]] && break
  sleep 0.5
done
cat <<MSG

  dbmigrate operator starting. In another terminal:
    export KUBECONFIG=$KUBECONFIG
    alias kubectl=$KUBECTL      # (pinned v1.34 kubectl; any recent kubectl works)
    kubectl apply -f examples/source-pg15.yaml -f examples/migration-test.yaml
    kubectl get mig; kubectl describe mig pg-to-17
  Ctrl-C stops the operator (and the embedded control plane, if one was started).

MSG
.venv/bin/python -m dbmigrate --liveness=http://127.0.0.1:8080/healthz
