#!/usr/bin/env bash
# Build the cluster add-on binaries from the Go module proxy, cached with stamps:
#   coredns            CoreDNS $COREDNS_VERSION with the plugins listed in coredns/main.go
#   local-provisioner  our local-volume provisioner (provisioner/main.go, sig-storage-lib)
# Prints the bin dir on the last line.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/common.sh"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
PROVLIB_VERSION="${PROVLIB_VERSION:-v13.0.0}"
# The provisioner's client libraries at the cluster's own version: the same module versions as
# the hack/k8s-bins.sh build, so a cold build reuses most of its compiled packages.
K8S_STAGING="${K8S_STAGING:-v0.34.4}"
OUT="$CACHE/addons/bin"
mkdir -p "$OUT"
# one build at a time (up.sh, images/build.sh and a user may all call this)
exec 9>"$CACHE/addons/.lock"; flock 9

# gobuild NAME MAIN_GO REQUIRE...: a throw-away module in $CACHE/addons/src/NAME holding
# MAIN_GO and a go.mod requiring the given module@version pairs; rebuilt when they change.
gobuild() {
  local name=$1 main=$2; shift 2
  local src="$CACHE/addons/src/$name" hash
  hash="$(cat "$main" <(printf '%s\n' "$@" "$(go version)") | sha256sum | cut -c1-16)"
  if [[ -x $OUT/$name && "$(cat "$OUT/.$name.stamp" 2>/dev/null)" == "$hash" ]]; then return 0; fi
  log "building $name ($*)"
  local start=$SECONDS
  rm -rf "$src"; mkdir -p "$src"
  cp "$main" "$src/main.go"
  {
    printf 'module dbmigrate.dev/%s\n\ngo 1.24.0\n\nrequire (\n' "$name"
    local r; for r in "$@"; do printf '\t%s %s\n' "${r%@*}" "${r#*@}"; done
    printf ')\n'
  } > "$src/go.mod"
  (cd "$src" && GOFLAGS=-mod=mod go mod tidy >&2 && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/$name.tmp" . >&2)
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "$hash" > "$OUT/.$name.stamp"
  log "built $name in $((SECONDS - start))s"
}

gobuild coredns "$HERE/coredns/main.go" "github.com/coredns/coredns@$COREDNS_VERSION"
gobuild local-provisioner "$HERE/provisioner/main.go" "sigs.k8s.io/sig-storage-lib-external-provisioner/v13@$PROVLIB_VERSION" \
  "k8s.io/client-go@$K8S_STAGING" "k8s.io/api@$K8S_STAGING" "k8s.io/apimachinery@$K8S_STAGING"
echo "$OUT"
