#!/usr/bin/env bash
# Bring up a real single-node Kubernetes cluster on this machine (no Docker, no VM):
#
#   1. host packages (deps.sh) and the pinned Kubernetes binaries (hack/k8s-bins.sh WANT=all)
#   2. PKI and kubeconfigs (certs.sh), the local pause image (images/build.sh pause)
#   3. host network: bridge, service route, our FORWARD drop chains (network.sh)
#   4. containerd (CRI, restrict_oom_score_adj) -> pause image imported
#   5. etcd -> kube-apiserver (RBAC, Node authz, service-account tokens)
#   6. kube-controller-manager, kube-scheduler, kubelet (cgroupfs), kube-proxy (iptables)
#   7. add-ons: CoreDNS (cluster names only, no forwarding), the local volume provisioner
#      and its default StorageClass
#
# Idempotent: a component whose PID is alive is left alone, so running it again on a live
# cluster only restarts what died. State: $RUN (pids/, logs/, etcd data, configs).
# The last line printed is the admin kubeconfig's path.
#
# Env: DBMIGRATE_CACHE (default ~/.cache/dbmigrate), DBMIGRATE_CLUSTER_DIR (default
#      $DBMIGRATE_CACHE/cluster), CLUSTER_ADDONS=0 to skip DNS + storage.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/common.sh"
. "$HERE/network.sh"
[[ $EUID -eq 0 ]] || die "must run as root (containerd, kubelet, iptables)"
T0=$SECONDS

# A cluster whose processes were killed (session end, reboot, kill -9) leaves mounts, veths and
# rules behind: if containerd is gone but our state is still there, clean it first.
if ! pid_alive containerd && compgen -G "$RUN/pids/*.pid" >/dev/null; then
  log "stale cluster state (its processes are gone): cleaning up with down.sh first"
  "$HERE/down.sh"
fi
mkdir -p "$RUN"/{pids,logs,cni/net.d,cni/ipam} "$CTRD_ROOT" "$CTRD_STATE"

"$HERE/deps.sh"
log "Kubernetes binaries"
BIN="$(WANT=all "$REPO_ROOT/hack/k8s-bins.sh" | tail -1)"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [[ -x $BIN/$b ]] || die "missing $BIN/$b"
done
ln -sf "$BIN/kubectl" "$RUN/kubectl"
"$HERE/certs.sh"
PKI="$RUN/pki"
KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")

alive() { pid_alive "$1"; }

# start NAME CMD... : run in the background (own session, so it outlives this script),
# output to logs/NAME.log, pid to pids/NAME.pid; a live one is left alone.
start() {
  local name=$1; shift
  if alive "$name"; then log "$name already running (pid $(cat "$RUN/pids/$name.pid"))"; return 0; fi
  log "starting $name"
  setsid "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
  record_pid "$name" $!
}

# put FILE: write stdin to FILE only when the content differs (kube-proxy exits when its
# config file changes under it, even with the same bytes rewritten).
put() {
  local new; new="$(cat)"
  [[ -f $1 && "$(cat "$1")" == "$new" ]] && return 0
  printf '%s\n' "$new" > "$1.tmp" && mv "$1.tmp" "$1"
}

# wait_for WHAT TIMEOUT CMD... : poll until CMD succeeds; on timeout show the log and fail.
wait_for() {
  local what=$1 timeout=$2 t=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t > timeout)); then
      log "timed out after ${timeout}s waiting for $what; last log lines:"
      tail -n 30 "$RUN/logs/$what.log" >&2 2>/dev/null || true
      exit 1
    fi
    alive "$what" 2>/dev/null || [[ ! -f "$RUN/pids/$what.pid" ]] || { log "$what died:"; tail -n 40 "$RUN/logs/$what.log" >&2; exit 1; }
    sleep 0.5
  done
  log "$what ready ($((SECONDS - t))s)"
}

# ---- 2. pause image archive ------------------------------------------------------------
"$REPO_ROOT/images/build.sh" pause   # builds the archive; imported below once containerd runs

# ---- 3. network --------------------------------------------------------------------------
log "network: bridge $BRIDGE $NODE_IP, service route, $CHAIN_FWD drop chains"
net_up
: > "$RUN/resolv.conf"   # pods inherit no host nameserver: cluster DNS only

put "$RUN/cni/net.d/10-dbmigrate.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "dbmigrate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$CLUSTER_CIDR"}, {"dst": "$SERVICE_CIDR"}]
      }
    }
  ]
}
JSON

# ---- 4. containerd ----------------------------------------------------------------------
put "$RUN/containerd.toml" <<TOML
version = 2
root = "$CTRD_ROOT"
state = "$CTRD_STATE"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/pause:3.10"
  # root here lacks CAP_SYS_RESOURCE: runc must never try to lower oom_score_adj
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CTRD_STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
TOML
start containerd /usr/bin/containerd --config "$RUN/containerd.toml"
wait_for containerd 30 ctr --address "$CTRD_SOCK" version
"$REPO_ROOT/images/build.sh" pause
"$REPO_ROOT/images/build.sh" --import-built   # images built earlier (postgres:*, operator), if any

# ---- 5. etcd + apiserver ---------------------------------------------------------------
start etcd "$BIN/etcd" --name dbm --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "dbm=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
  --unsafe-no-fsync --log-level warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --anonymous-auth=true \
  --client-ca-file "$PKI/ca.crt" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --allow-privileged=true --cert-dir "$RUN/apiserver-certs" \
  --profiling=false --v=1
wait_for kube-apiserver 90 curl -sf --cacert "$PKI/ca.crt" "https://$NODE_IP:$API_PORT/readyz"

# ---- 6. controllers, node ----------------------------------------------------------------
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
  --profiling=false --v=1
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$RUN/scheduler.kubeconfig" \
  --authentication-kubeconfig "$RUN/scheduler.kubeconfig" \
  --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1

mkdir -p "$RUN/kubelet"
put "$RUN/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $RUN/resolv.conf
podCIDR: $POD_CIDR
volumePluginDir: $RUN/kubelet/volume-plugins
serializeImagePulls: false
# images are built here and cannot be pulled back: never garbage-collect them
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
rotateCertificates: false
serverTLSBootstrap: false
YAML
start kubelet "$BIN/kubelet" --config "$RUN/kubelet.yaml" --kubeconfig "$RUN/kubelet.kubeconfig" \
  --root-dir "$RUN/kubelet" --cert-dir "$RUN/kubelet/pki" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1

put "$RUN/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false}
YAML
start kube-proxy "$BIN/kube-proxy" --config "$RUN/kube-proxy.yaml" --oom-score-adj=0 --v=1

wait_for kubelet 90 "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
wait_for kube-proxy 30 curl -sf http://127.0.0.1:10256/healthz

# ---- 7. add-ons --------------------------------------------------------------------------
if [[ "${CLUSTER_ADDONS:-1}" == 1 ]]; then
  "$HERE/addons.sh"
fi

# a default service account must exist before pods can be created in "default"
wait_for kube-controller-manager 60 "${KUBECTL[@]}" -n default get serviceaccount default
net_reassert   # our FORWARD jump first, after kube-proxy's own
log "cluster up in $((SECONDS - T0))s"
log "export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "$KUBECONFIG_ADMIN"
