#!/usr/bin/env bash
# Provide etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
# and kubectl at ONE pinned Kubernetes version (plus helm), in a cache outside git.
#
# Steps:
#   1. If $KUBEBUILDER_ASSETS holds etcd + kube-apiserver (envtest's convention), use it.
#   2. Otherwise build each missing binary from the Go module proxy into
#      $DBMIGRATE_CACHE/k8s/<version>/bin, with a throw-away go.mod that requires
#      k8s.io/kubernetes and replaces every k8s.io/* staging module by its v0.x twin.
#      A stamp per binary makes a warm run a no-op; a changed pin builds into a new dir.
# Prints the bin directory on the last line of stdout (progress goes to stderr).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE="${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}"
# Which binaries to build: the control plane by default, the whole node with WANT=all.
WANT="${WANT:-control-plane}"

log() { printf '[k8s-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# envtest's assets hold etcd/kube-apiserver/kubectl only: use them for the control plane, never
# when the whole node (kubelet, kube-proxy...) is wanted.
if [[ "$WANT" != all && -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" \
      && -x "$KUBEBUILDER_ASSETS/etcd" && -x "$KUBEBUILDER_ASSETS/kube-controller-manager" ]]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

BIN="$CACHE/k8s/$K8S_VERSION/bin"
SRC="$CACHE/k8s/$K8S_VERSION/src"
mkdir -p "$BIN" "$SRC"

cmds=(kube-apiserver kube-controller-manager kubectl)
if [[ "$WANT" == all ]]; then
  cmds+=(kube-scheduler kubelet kube-proxy)
fi

missing=()
for c in "${cmds[@]}"; do
  [[ -x "$BIN/$c" && -f "$BIN/.$c.stamp" ]] || missing+=("$c")
done

minor="${K8S_VERSION#v1.}"   # 34.4 -> staging modules are v0.34.4
staging_version="v0.$minor"

if ((${#missing[@]})); then
  cd "$SRC"
  if [[ ! -f go.mod ]]; then
    log "writing go.mod for k8s.io/kubernetes $K8S_VERSION"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    {
      echo "module dbmigrate.dev/k8sbuild"
      echo
      echo "go 1.24.0"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      grep -E '=> \./staging/' "$modfile" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
    } > go.mod.tmp
    mv go.mod.tmp go.mod
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n)\n' > tools.go
    log "resolving modules (first time: downloads from the Go module proxy)"
    GOFLAGS=-mod=mod go mod tidy >&2 2>&1 || GOFLAGS=-mod=mod go mod download >&2
  fi
  for c in "${missing[@]}"; do
    log "building $c $K8S_VERSION (cold: kube-apiserver ~2-3 min on 2 cores)"
    start=$SECONDS
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=${minor%%.*} \
      -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
      -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
    mv "$BIN/$c.tmp" "$BIN/$c"
    touch "$BIN/.$c.stamp"
    log "built $c in $((SECONDS - start))s"
  done
fi

if [[ ! -x "$BIN/etcd" || ! -f "$BIN/.etcd.stamp" ]]; then
  esrc="$CACHE/k8s/etcd-$ETCD_VERSION/src"
  mkdir -p "$esrc"
  cd "$esrc"
  if [[ ! -f go.mod ]]; then
    printf 'module dbmigrate.dev/etcdbuild\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
    printf 'package tools\n\nimport (\n\t_ "go.etcd.io/etcd/server/v3"\n)\n' > tools.go
    log "resolving etcd $ETCD_VERSION modules"
    GOFLAGS=-mod=mod go mod tidy >&2
  fi
  log "building etcd $ETCD_VERSION"
  start=$SECONDS
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  touch "$BIN/.etcd.stamp"
  log "built etcd in $((SECONDS - start))s"
fi

# Helm renders the chart the tests install (the same artefact users install).
if [[ ! -x "$BIN/helm" || ! -f "$BIN/.helm-$HELM_VERSION.stamp" ]]; then
  log "building helm $HELM_VERSION"
  start=$SECONDS
  GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  touch "$BIN/.helm-$HELM_VERSION.stamp"
  log "built helm in $((SECONDS - start))s"
fi

echo "$BIN"
