#!/usr/bin/env bash
# Provide a Lua interpreter (Debian's lua5.4) for testing docs/argocd-health.lua; print its path.
# Idempotent: installs only when missing. Argo CD runs health checks in gopher-lua (Lua 5.1
# semantics); the script sticks to the common subset, so 5.4 runs exactly the same code.
set -euo pipefail
for lua in lua5.4 lua5.3 lua5.1 lua; do
  if command -v "$lua" >/dev/null 2>&1; then command -v "$lua"; exit 0; fi
done
echo "[lua] installing lua5.4 from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 install -y -q lua5.4 >&2 \
  || { apt-get -o DPkg::Lock::Timeout=300 update -q >&2 && apt-get -o DPkg::Lock::Timeout=300 install -y -q lua5.4 >&2; }
command -v lua5.4
