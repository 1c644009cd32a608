#!/usr/bin/env bash
# Tear the local cluster down, idempotently: every process we started (by the PIDs we
# recorded), every container and shim, every mount under our dirs, the bridge and its
# veths, our iptables chains and kube-proxy's/CNI's. Cluster state (etcd, kubelet dir,
# IPAM, volumes) is deleted; the PKI, the images in containerd's store and the caches stay.
#   --purge   also delete containerd's image store and the PKI
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/common.sh"
. "$HERE/network.sh"
[[ $EUID -eq 0 ]] || die "must run as root"
PURGE=0; [[ "${1:-}" == --purge ]] && PURGE=1
T0=$SECONDS

# stop NAME...: SIGTERM to each recorded PID, wait up to 15 s for all, then SIGKILL — only the
# PIDs we recorded, never by process name.
stop() {
  local name pid i pids=()
  for name in "$@"; do
    [[ -f $RUN/pids/$name.pid ]] || continue
    pid="$(cat "$RUN/pids/$name.pid")"
    if pid_alive "$name"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for i in $(seq 1 30); do
    local left=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    pids=("${left[@]}")
    ((${#pids[@]})) || break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do log "pid $pid ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$RUN/pids/$name.pid" "$RUN/pids/$name.exe"; done
}

# The node agents first, so nothing restarts containers while we remove them.
stop local-provisioner kubelet kube-proxy kube-scheduler kube-controller-manager

# Containers: kill every task in containerd's k8s.io namespace, then delete the containers
# (their shims exit with them).
if [[ -S $CTRD_SOCK ]] && ctr --address "$CTRD_SOCK" version >/dev/null 2>&1; then
  ctr_() { timeout 20 ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }
  tasks="$(ctr_ tasks ls -q 2>/dev/null || true)"
  if [[ -n $tasks ]]; then
    log "killing $(wc -w <<<"$tasks") containers"
    for t in $tasks; do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $tasks; do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  for c in $(ctr_ containers ls -q 2>/dev/null || true); do
    ctr_ containers rm "$c" >/dev/null 2>&1 || true
    # libcni's result cache (fixed path) for this container's interfaces
    rm -f /var/lib/cni/results/*-"$c"-* 2>/dev/null || true
  done
fi
stop containerd

# Shims or container processes left over (containerd crashed, say): their pid files live in
# the runtime's state dir, which is ours.
if [[ -d $CTRD_STATE/io.containerd.runtime.v2.task ]]; then
  for f in "$CTRD_STATE"/io.containerd.runtime.v2.task/*/*/{init,shim}.pid; do
    [[ -f $f ]] || continue
    pid="$(cat "$f")"
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && { log "killing leftover pid $pid ($f)"; kill -KILL "$pid" 2>/dev/null || true; }
  done
fi

# Shims of our containerd that outlived it (it was killed): each names our socket in its argv.
for d in /proc/[0-9]*; do
  [[ "$(readlink "$d/exe" 2>/dev/null)" == */containerd-shim-runc-v2 ]] || continue
  if tr '\0' '\n' < "$d/cmdline" 2>/dev/null | grep -qxF -- "$CTRD_SOCK"; then
    log "killing leftover shim pid ${d#/proc/}"
    kill -KILL "${d#/proc/}" 2>/dev/null || true
  fi
done

stop kube-apiserver
stop etcd

# Mounts under our directories (container rootfs overlays, netns, shm, secret tmpfs, ...),
# deepest first.
unmount_under() {
  local dir=$1 m n=0
  [[ -d $dir ]] || return 0
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    n=$((n + 1))
  done < <(awk -v d="$dir/" '{ gsub(/\\040/, " ", $5); if (index($5, d) == 1) print $5 }' /proc/self/mountinfo | sort -r)
  ((n)) && log "unmounted $n mounts under $dir"
  return 0
}
unmount_under "$RUN"
unmount_under "$CTRD_ROOT"

# What the runtime keeps outside our dirs (paths fixed in containerd 1.7 / libcni / kubelet):
# the CNI result cache of our network, shim sockets of our containerd's shims (dead by now).
rm -f /var/lib/cni/results/dbmigrate-* 2>/dev/null || true   # our network's, if a container was gone already
if [[ -d /run/containerd/s ]] && ! pgrep -x containerd >/dev/null; then
  find /run/containerd/s -maxdepth 1 -type s -delete 2>/dev/null || true
fi

log "network: removing $BRIDGE, veths, $CHAIN_FWD, KUBE-*/CNI-* chains"
net_down

# State of this cluster instance; keep the last logs for post-mortems.
if [[ -d $RUN ]]; then
  rm -rf "$RUN/logs.last"
  [[ -d $RUN/logs ]] && mv "$RUN/logs" "$RUN/logs.last"
  rm -rf "$RUN"/{etcd,kubelet,cni,containerd-state,apiserver-certs,pids,volumes} "$RUN"/*.sock* "$RUN"/*.yaml "$RUN"/*.toml 2>/dev/null || true
fi
if ((PURGE)); then
  log "purging containerd store and PKI"
  rm -rf "$CTRD_ROOT" "$RUN/pki" "$RUN"/*.kubeconfig
fi
log "cluster down in $((SECONDS - T0))s"
