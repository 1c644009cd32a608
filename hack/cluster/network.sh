# Host networking for the local cluster: a bridge that only this machine can reach.
#   - bridge $BRIDGE holds $NODE_IP (apiserver, kubelet and node IP live there);
#   - the service CIDR is routed onto the bridge, so a service address never follows the
#     default route off the machine, even before kube-proxy has written its rules;
#   - our own chain $CHAIN_FWD (filter and mangle FORWARD, jumped to first) drops every
#     forwarded packet from the pod CIDR or the bridge that would leave through any other
#     interface, and names the external interface explicitly too;
#   - the CNI config has ipMasq=false (no outward masquerade) and gives pods routes to the
#     cluster and service CIDRs only: no default route at all inside a pod.
# shellcheck shell=bash

net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/24" dev "$BRIDGE"
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1" || true
  ip link set "$BRIDGE" up
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  sysctl -qw net.bridge.bridge-nf-call-ip6tables=1 || true

  local ext; ext="$(ext_iface)"
  local t
  for t in filter mangle; do
    iptables -t "$t" -N "$CHAIN_FWD" 2>/dev/null || iptables -t "$t" -F "$CHAIN_FWD"
    if [[ -n $ext ]]; then
      iptables -t "$t" -A "$CHAIN_FWD" -s "$CLUSTER_CIDR" -o "$ext" -m comment --comment "dbmigrate: pod traffic never leaves the machine" -j DROP
    fi
    iptables -t "$t" -A "$CHAIN_FWD" -s "$CLUSTER_CIDR" ! -o "$BRIDGE" -m comment --comment "dbmigrate: pods reach the bridge only" -j DROP
    iptables -t "$t" -A "$CHAIN_FWD" -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "dbmigrate: nothing from the bridge is forwarded elsewhere" -j DROP
    iptables -t "$t" -C FORWARD -j "$CHAIN_FWD" 2>/dev/null || iptables -t "$t" -I FORWARD 1 -j "$CHAIN_FWD"
  done
  ip6tables -N "$CHAIN_FWD" 2>/dev/null || ip6tables -F "$CHAIN_FWD"
  ip6tables -A "$CHAIN_FWD" -i "$BRIDGE" -j DROP
  ip6tables -C FORWARD -j "$CHAIN_FWD" 2>/dev/null || ip6tables -I FORWARD 1 -j "$CHAIN_FWD"
}

# Is our FORWARD jump still first in the filter table? (kube-proxy prepends its own chains;
# ours are DROP-only so the order does not weaken them, but keep it first anyway.)
# Call it once kube-proxy has synced: it adds its FORWARD jumps (the last one being
# KUBE-EXTERNAL-SERVICES) only when they are missing, so ours stays first afterwards. The mangle
# table's copy of our chain (which kube-proxy never touches) runs before the filter table anyway.
net_reassert() {
  local i first
  for i in $(seq 1 40); do
    iptables -S FORWARD | grep -q -- '-j KUBE-EXTERNAL-SERVICES' && break
    sleep 0.25
  done
  first="$(iptables -S FORWARD | sed -n 2p)"
  if [[ "$first" != "-A FORWARD -j $CHAIN_FWD" ]]; then
    iptables -D FORWARD -j "$CHAIN_FWD" 2>/dev/null || true
    iptables -I FORWARD 1 -j "$CHAIN_FWD"
  fi
}

net_down() {
  local v
  # veths whose master is our bridge (CNI normally removes them with the pod's netns)
  for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null || true
  done
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  local t
  for t in filter mangle; do
    while iptables -t "$t" -D FORWARD -j "$CHAIN_FWD" 2>/dev/null; do :; done
    iptables -t "$t" -F "$CHAIN_FWD" 2>/dev/null || true
    iptables -t "$t" -X "$CHAIN_FWD" 2>/dev/null || true
  done
  while ip6tables -D FORWARD -j "$CHAIN_FWD" 2>/dev/null; do :; done
  ip6tables -F "$CHAIN_FWD" 2>/dev/null || true
  ip6tables -X "$CHAIN_FWD" 2>/dev/null || true
  # kube-proxy's chains (KUBE-*) and the CNI plugins' (CNI-*), in every table, with the jumps to them
  local tbl cmd
  for cmd in iptables ip6tables; do
    for tbl in filter nat mangle raw; do
      $cmd -t "$tbl" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' \
        | sed 's/^-A /-D /' | while read -r rule; do eval "$cmd -t $tbl $rule" 2>/dev/null || true; done || true
      for chain in $($cmd -t "$tbl" -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/{print $2}'); do
        $cmd -t "$tbl" -F "$chain" 2>/dev/null || true
      done
      for chain in $($cmd -t "$tbl" -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/{print $2}'); do
        $cmd -t "$tbl" -X "$chain" 2>/dev/null || true
      done
    done
  done
}
