#!/usr/bin/env bash
# `make demo`: a test migration PostgreSQL 15 -> 17 on a real cluster, from a fresh clone.
# Steps:
#   1. A cluster: the one $KUBECONFIG points at if it answers, else the local single-node
#      cluster of hack/cluster (built and started here, as root).
#   2. Images (local cluster only; no registry): postgres:15, postgres:17, the operator and the
#      worker for 17, rebuilt only when their inputs changed.
#   3. The operator, installed the way users install it: the Helm chart from charts/.
#   4. A sample source (examples/source-pg15.yaml) in namespace dbmigrate-demo, with some data.
#   5. The test Migration (examples/migration-test.yaml); progress is shown until it is Ready.
#   6. The test server's address, credentials Secret, and how to connect.
set -euo pipefail
cd "$(dirname "$0")/.."
NS="${DEMO_NAMESPACE:-dbmigrate-demo}"
step() { printf '\n==> %s\n' "$*"; }

BIN="$(WANT=all bash hack/k8s-bins.sh 2>/dev/null | tail -n1)"
KUBECTL="$BIN/kubectl"
HELM="$BIN/helm"

step "1/6 cluster"
local_cluster=0
if [[ -n "${KUBECONFIG:-}" ]] && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
  echo "using the cluster of $KUBECONFIG"
else
  export KUBECONFIG="$(bash hack/cluster/up.sh | tail -n1)"
  local_cluster=1
fi
k() { "$KUBECTL" "$@"; }
k get nodes

pull=IfNotPresent
if ((local_cluster)); then
  step "2/6 images (built locally, imported into the cluster's containerd)"
  bash images/build.sh pause coredns postgres15 postgres17 operator worker17
  pull=Never
else
  step "2/6 images: using what your cluster can pull (postgres:15/17, dbmigrate, dbmigrate-worker:17)"
fi

step "3/6 operator (Helm chart charts/dbmigrate)"
# Helm installs CRDs once and never updates them: apply the current one first (an upgrade).
k apply --server-side --force-conflicts -f charts/dbmigrate/crds/ >/dev/null
"$HELM" upgrade --install dbmigrate charts/dbmigrate --namespace dbmigrate-system --create-namespace \
  --set image.pullPolicy="$pull" --wait --timeout 5m
k -n dbmigrate-system get pods

step "4/6 sample source: PostgreSQL 15 with data, in namespace $NS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NS" apply -f examples/source-pg15.yaml
k -n "$NS" rollout status statefulset/pg --timeout=5m
k -n "$NS" exec pg-0 -- psql -U postgres -v ON_ERROR_STOP=1 -q -c "
  CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text, total numeric(10,2),
                                     placed timestamptz DEFAULT now());
  INSERT INTO orders (customer, total) SELECT 'customer ' || g, g * 1.5 FROM generate_series(1, 10000) g;"
echo "source holds $(k -n "$NS" exec pg-0 -- psql -U postgres -Atc 'SELECT count(*) FROM orders') orders"

step "5/6 test Migration pg-to-17 (kubectl get mig -n $NS)"
k -n "$NS" apply -f examples/migration-test.yaml
deadline=$((SECONDS + 900)); last=""
while ((SECONDS < deadline)); do
  line="$(k -n "$NS" get mig pg-to-17 --no-headers -o custom-columns=PHASE:.status.phase,PROGRESS:.status.progress.display,MESSAGE:.status.message 2>/dev/null || true)"
  [[ "$line" != "$last" ]] && { printf '%s  %s\n' "$(date +%H:%M:%S)" "$line"; last="$line"; }
  phase="$(k -n "$NS" get mig pg-to-17 -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  [[ "$phase" == Ready || "$phase" == Failed ]] && break
  sleep 3
done
k -n "$NS" get mig
if [[ "$phase" != Ready ]]; then
  k -n "$NS" describe mig pg-to-17
  echo "the test migration did not become Ready (phase: ${phase:-none})" >&2
  exit 1
fi

step "6/6 the test server"
host="$(k -n "$NS" get mig pg-to-17 -o jsonpath='{.status.testServer.host}')"
port="$(k -n "$NS" get mig pg-to-17 -o jsonpath='{.status.testServer.port}')"
secret="$(k -n "$NS" get mig pg-to-17 -o jsonpath='{.status.testServer.credentialsSecretName}')"
expires="$(k -n "$NS" get mig pg-to-17 -o jsonpath='{.status.testServer.expiresAt}')"
cat <<MSG
  address:      $host:$port   (PostgreSQL 17, a copy of every database of pg; expires $expires)
  credentials:  Secret $NS/$secret (keys username, password)

  connect from a pod in namespace $NS:
    kubectl -n $NS run psql --rm -it --restart=Never --image=postgres:17 --image-pull-policy=$pull \\
      --env=PGPASSWORD="\$(kubectl -n $NS get secret $secret -o jsonpath='{.data.password}' | base64 -d)" \\
      -- psql -h $host -p $port -U postgres -c 'SELECT count(*) FROM orders'

  export KUBECONFIG=$KUBECONFIG   # then: kubectl -n $NS describe mig pg-to-17
MSG
