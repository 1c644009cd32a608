#!/usr/bin/env bash
# Build the cluster's images locally (no Docker, no registry) and import them into the
# cluster's containerd when it runs. Each image is rebuilt only when its inputs change.
#
#   images/build.sh [pause|coredns|postgres15..18|operator|worker15..18|all]...
#   images/build.sh --import-built      (load every archive already built; no building)
#
# Archives: $DBMIGRATE_CACHE/images/<name>-<tag>.oci.tar (+ .stamp with the inputs' hash).
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
exec 8>"$OCI_OUT/.lock"; flock 8   # one image build at a time

build_pause() {
  local src="$IMAGES_DIR/pause/pause.c" hash
  hash="$(inputs_hash "$src" "$(gcc --version | head -1)" v2)"
  if ! fresh pause 3.10 "$hash"; then
    local root; root="$(mktemp -d)"; chmod 755 "$root"
    gcc -static -Os -s -o "$root/pause" "$src"
    oci_from_rootfs pause 3.10 "$hash" "$root" --config.entrypoint /pause --config.user 65535:65535
    rm -rf "$root"
  fi
  import_image pause 3.10
}

# --import-built: load every archive already built (no building); up.sh uses it after a purge.
if [[ "${1:-}" == --import-built ]]; then
  for f in "$OCI_OUT"/*.oci.tar; do
    [[ -f $f ]] || continue
    b="$(basename "$f" .oci.tar)"; import_image "${b%-*}" "${b##*-}"
  done
  exit 0
fi

targets=("$@"); ((${#targets[@]})) || targets=(pause)
[[ " ${targets[*]} " == *" all "* ]] && targets=(pause coredns postgres15 postgres16 postgres17 postgres18 operator worker15 worker16 worker17 worker18)
for t in "${targets[@]}"; do
  case "$t" in
    pause) build_pause ;;
    coredns) . "$IMAGES_DIR/coredns/build.sh"; build_coredns ;;
    postgres1[5-8]) . "$IMAGES_DIR/postgres/build.sh"; build_postgres "${t#postgres}" ;;
    operator) . "$IMAGES_DIR/operator/build.sh"; build_operator ;;
    worker1[5-8]) . "$IMAGES_DIR/operator/build.sh"; build_worker "${t#worker}" ;;
    *) die "unknown image $t" ;;
  esac
done
