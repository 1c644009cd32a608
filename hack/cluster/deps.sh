#!/usr/bin/env bash
# Install the host packages the local cluster needs, idempotently, without upgrading libc:
#   bookworm: runc, containernetworking-plugins, iptables, conntrack, socat, umoci, openssl,
#             mmdebstrap (image rootfs), gcc (pause binary)
#   trixie (pinned low, only what we name): containerd 1.7
# (DESIGN.md §6 lists which suite each one must come from; trixie's CNI plugins would pull
# a newer libc6, so they are taken from bookworm.)
set -euo pipefail
. "$(dirname "$0")/common.sh"

bookworm_pkgs=(runc containernetworking-plugins iptables conntrack socat umoci openssl mmdebstrap gcc libc6-dev iproute2 util-linux curl ca-certificates)
missing=()
for p in "${bookworm_pkgs[@]}" containerd; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then log "host packages present"; exit 0; fi

# trixie, pinned below bookworm so that nothing else is ever taken from it.
if [[ ! -f /etc/apt/sources.list.d/dbmigrate-trixie.sources ]]; then
  log "adding Debian trixie (pinned at priority 100) for containerd"
  cat > /etc/apt/sources.list.d/dbmigrate-trixie.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/dbmigrate-trixie <<PREF
Package: *
Pin: release n=trixie
Pin-Priority: 100
PREF
fi
apt_opts=(-y -q -o DPkg::Lock::Timeout=600 -o Acquire::Check-Valid-Until=false)
log "apt-get update"
apt-get "${apt_opts[@]}" update >&2
log "installing: ${missing[*]}"
bw=(); for p in "${missing[@]}"; do [[ $p == containerd ]] || bw+=("$p"); done
((${#bw[@]})) && DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install --no-install-recommends "${bw[@]}" >&2
if [[ " ${missing[*]} " == *" containerd "* ]]; then
  # Simulate first: refuse if trixie's containerd would touch libc6.
  if apt-get -s -o Acquire::Check-Valid-Until=false install --no-install-recommends -t trixie containerd 2>/dev/null | grep -q '^Inst libc6 '; then
    die "trixie's containerd would upgrade libc6; refusing"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install --no-install-recommends -t trixie containerd >&2
fi
# Debian's containerd package starts a system service where an init system exists; we run
# our own containerd with our own config and socket, so make sure the packaged one is not running.
log "host packages installed"
