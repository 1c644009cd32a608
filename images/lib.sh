# Helpers to build OCI image archives without Docker (umoci) and load them into the
# cluster's containerd. Sourced by images/build.sh.
# shellcheck shell=bash
shopt -s inherit_errexit   # a failure inside $(...) must stop the build, not be ignored
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/hack/cluster/common.sh"
IMAGES_DIR="$REPO_ROOT/images"
OCI_OUT="$CACHE/images"           # <name>-<tag>.oci.tar + .stamp (hash of the inputs)
mkdir -p "$OCI_OUT"

# inputs_hash FILE_OR_STRING... -> sha256 over file contents (or the literal strings).
# Contents only, never paths: a clone elsewhere (CI's clean clone) must not rebuild anything.
inputs_hash() {
  local a
  for a in "$@"; do
    if [[ -f "$a" ]]; then sha256sum < "$a"; else printf '%s\n' "$a"; fi
  done | sha256sum | cut -c1-16
}

# fresh NAME TAG HASH -> true when the archive exists and was built from these inputs.
fresh() { [[ -f "$OCI_OUT/$1-$2.oci.tar" && "$(cat "$OCI_OUT/$1-$2.stamp" 2>/dev/null)" == "$3" ]]; }

# oci_from_rootfs NAME TAG HASH ROOTFS [umoci config args...]
# One layer holding ROOTFS, the config from the remaining args, written as an OCI archive
# whose ref name is the tag; ctr import gives it the name docker.io/library/NAME:TAG
# (the name a bare "NAME:TAG" in a pod spec normalises to).
oci_from_rootfs() {
  local name=$1 tag=$2 hash=$3 rootfs=$4; shift 4
  local work; work="$(mktemp -d "$OCI_OUT/.build-$name-XXXX")"
  log "image $name:$tag: packing $rootfs"
  local start=$SECONDS
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$tag"
  umoci insert --image "$work/layout:$tag" "$rootfs" /
  umoci config --image "$work/layout:$tag" --author dbmigrate "$@" \
    --config.label "dev.dbmigrate.inputs=$hash"
  umoci gc --layout "$work/layout"
  tar -C "$work/layout" -cf "$OCI_OUT/$name-$tag.oci.tar.tmp" .
  mv "$OCI_OUT/$name-$tag.oci.tar.tmp" "$OCI_OUT/$name-$tag.oci.tar"
  echo "$hash" > "$OCI_OUT/$name-$tag.stamp"
  rm -rf "$work"
  log "image $name:$tag: built in $((SECONDS - start))s ($(du -h "$OCI_OUT/$name-$tag.oci.tar" | cut -f1))"
}

ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

# import_image NAME TAG: load the archive into containerd unless that exact build is there.
import_image() {
  local name=$1 tag=$2 ref="docker.io/library/$1:$2" hash
  hash="$(cat "$OCI_OUT/$name-$tag.stamp")"
  if [[ ! -S "$CTRD_SOCK" ]]; then log "containerd not running: $name:$tag not imported"; return 0; fi
  # (list first, then grep: `ctr | grep -q` can fail under pipefail when grep exits early)
  local have; have="$(ctr_ images ls -q)"
  if [[ "$(cat "$CTRD_ROOT/.imported-$name-$tag" 2>/dev/null)" == "$hash" ]] && grep -qx "$ref" <<<"$have"; then
    return 0
  fi
  log "importing $ref"
  ctr_ images import --base-name "docker.io/library/$name" "$OCI_OUT/$name-$tag.oci.tar" >&2
  # The CRI plugin only sees an image that has a name it can parse; make sure of ours.
  have="$(ctr_ images ls -q)"
  grep -qx "$ref" <<<"$have" || die "import did not produce $ref"
  echo "$hash" > "$CTRD_ROOT/.imported-$name-$tag"
}
