# Shared settings for the local single-node cluster (sourced by up.sh, down.sh, images/*.sh).
# Everything that must survive a tear-down (binaries, images, containerd's content store)
# lives under $CACHE; everything that belongs to one running cluster lives under $RUN.
# shellcheck shell=bash

CACHE="${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}"
RUN="${DBMIGRATE_CLUSTER_DIR:-$CACHE/cluster}"     # certs, configs, etcd data, pids, logs
CTRD_ROOT="$CACHE/containerd"                         # persistent: imported images survive down.sh
CTRD_STATE="$RUN/containerd-state"
CTRD_SOCK="$RUN/containerd.sock"
NODE_NAME="${DBMIGRATE_NODE_NAME:-dbm-node}"
BRIDGE="dbm0"
POD_CIDR="10.244.0.0/24"
CLUSTER_CIDR="10.244.0.0/16"
NODE_IP="10.244.0.1"          # the bridge's address: apiserver, kubelet and node IP live here,
                              # never on the machine's external interface
SERVICE_CIDR="10.96.0.0/16"
API_SVC_IP="10.96.0.1"
DNS_IP="10.96.0.10"
CLUSTER_DOMAIN="cluster.local"
API_PORT=6443
ETCD_PORT=2379                # loopback only
ETCD_PEER_PORT=2380
KUBECONFIG_ADMIN="$RUN/admin.kubeconfig"
CHAIN_FWD="DBMIGRATE-FWD"     # our own iptables chain (FORWARD isolation)
HERE_COMMON="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE_COMMON/../.." && pwd)"
export PATH="/usr/local/go/bin:/usr/sbin:/sbin:$PATH"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The interface that holds the default route (the way off this machine), if any.
ext_iface() { ip -4 route show default 2>/dev/null | awk '{for(i=1;i<=NF;i++) if($i=="dev"){print $(i+1); exit}}'; }

k8s_bin_dir() { echo "$CACHE/k8s/${K8S_VERSION:-v1.34.4}/bin"; }

# pid_alive NAME: the PID recorded for NAME runs, and is still the program we started (a PID
# reused by another process after a reboot or a crash is never taken for ours, nor killed).
pid_alive() {
  local p exe
  p="$(cat "$RUN/pids/$1.pid" 2>/dev/null)" || return 1
  [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 1
  exe="$(cat "$RUN/pids/$1.exe" 2>/dev/null)" || return 0
  [[ "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$exe" ]]
}

# record_pid NAME PID: remember the PID and the program it runs
record_pid() {
  echo "$2" > "$RUN/pids/$1.pid"
  local i exe=""
  for i in $(seq 1 40); do   # the forked shell execs setsid, which execs the program: wait for that
    exe="$(readlink "/proc/$2/exe" 2>/dev/null)" || true
    [[ -n $exe && $exe != */setsid && $exe != */bash ]] && break
    sleep 0.05
  done
  echo "$exe" > "$RUN/pids/$1.exe"
}
