# The project's own images, built from this work tree:
#   dbmigrate:<chart appVersion>  the operator: Debian bookworm python3.11 (minbase) + the project
#                                 and its dependencies; uid 65532; entrypoint `python3 -m dbmigrate`
#                                 (the name and tag the chart's defaults use)
#   dbmigrate-worker:<major>      the copy Jobs' image: that major's PostgreSQL client tools first
#                                 on PATH + python3 + the project (runs as the Job's uid 999)
# Layer 1: a cached Debian rootfs; layer 2: site-packages (a wheel of the project + PyPI wheels for
# the rootfs' python version), rebuilt when pyproject.toml or anything under operator/ changes.
# shellcheck shell=bash

DEB_MIRROR="${DBMIGRATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# py_rootfs NAME SUITE PACKAGES -> a cached minbase rootfs with python3 and PACKAGES
py_rootfs() {
  local name=$1 suite=$2 pkgs=$3 dir="$OCI_OUT/rootfs/$1" recipe
  recipe="$(inputs_hash "$suite" "$pkgs" v2)"
  if [[ -f $dir/.recipe && "$(cat "$dir/.recipe")" == "$recipe" ]]; then echo "$dir"; return 0; fi
  log "$name: mmdebstrap $suite ($pkgs) -> $dir"
  local start=$SECONDS
  rm -rf "$dir.tmp"; mkdir -p "$OCI_OUT/rootfs"
  mmdebstrap --variant=minbase --include="$pkgs" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --essential-hook='echo "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" >> "$1/etc/passwd"; echo "postgres:x:999:" >> "$1/etc/group"; echo "dbmigrate:x:65532:65532:dbmigrate operator:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"; echo "dbmigrate:x:65532:" >> "$1/etc/group"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old' \
    "$suite" "$dir.tmp" "$DEB_MIRROR" >&2 || die "$name: mmdebstrap failed"
  echo "$recipe" > "$dir.tmp/.recipe"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  log "$name: rootfs in $((SECONDS - start))s ($(du -sh "$dir" | cut -f1))"
  echo "$dir"
}

project_hash() {
  # (not the egg-info pip writes into operator/: it embeds the README, which is no input)
  (cd "$REPO_ROOT" && find pyproject.toml operator -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
     ! -name '*.pyc' -print0 \
     | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

# site_packages PYVER -> a cached dir holding opt/dbmigrate/site-packages for python PYVER
site_packages() {
  local pyver=$1 hash dir
  hash="$(project_hash)"
  dir="$OCI_OUT/site-packages/py$pyver-$hash"
  if [[ -d $dir ]]; then echo "$dir"; return 0; fi
  log "site-packages for python $pyver: the project wheel + its dependencies"
  local wheels; wheels="$(mktemp -d)"
  rm -rf "$OCI_OUT/site-packages/py$pyver-"*   # builds of older sources for this python are stale
  mkdir -p "$dir.tmp"; chmod 755 "$dir.tmp"
  python3 -m pip wheel -q --no-deps -w "$wheels" "$REPO_ROOT" >&2
  python3 -m pip install -q --root-user-action=ignore --no-compile --no-warn-conflicts --target "$dir.tmp/opt/dbmigrate/site-packages" \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --python-version "$pyver" \
    --implementation cp --only-binary=:all: "$wheels"/dbmigrate-*.whl >&2
  rm -rf "$wheels"
  mv "$dir.tmp" "$dir"
  echo "$dir"
}

rootfs_python() { chroot "$1" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# pack NAME TAG HASH BASE TOP [umoci config args...]: two layers, then an OCI archive
pack2() {
  local name=$1 tag=$2 hash=$3 base=$4 top=$5; shift 5
  local work start=$SECONDS; work="$(mktemp -d "$OCI_OUT/.build-$name-XXXX")"
  log "image $name:$tag: packing"
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$tag"
  umoci insert --image "$work/layout:$tag" "$base" /
  umoci insert --image "$work/layout:$tag" "$top" /
  umoci config --image "$work/layout:$tag" --author dbmigrate "$@" --config.label "dev.dbmigrate.inputs=$hash"
  umoci gc --layout "$work/layout"
  tar -C "$work/layout" -cf "$OCI_OUT/$name-$tag.oci.tar.tmp" .
  mv "$OCI_OUT/$name-$tag.oci.tar.tmp" "$OCI_OUT/$name-$tag.oci.tar"
  echo "$hash" > "$OCI_OUT/$name-$tag.stamp"
  rm -rf "$work"
  log "image $name:$tag: packed in $((SECONDS - start))s ($(du -h "$OCI_OUT/$name-$tag.oci.tar" | cut -f1))"
}

operator_tag() { awk -F'"' '/^appVersion:/ {print $2}' "$REPO_ROOT/charts/dbmigrate/Chart.yaml" 2>/dev/null | grep . || echo dev; }

build_operator() {
  local base top hash tag; tag="$(operator_tag)"
  base="$(py_rootfs python311 bookworm python3)"
  top="$(site_packages "$(rootfs_python "$base")")"
  hash="$(inputs_hash "$(cat "$base/.recipe")" "$top" "${BASH_SOURCE[0]}")"
  if ! fresh dbmigrate "$tag" "$hash"; then
    pack2 dbmigrate "$tag" "$hash" "$base" "$top" \
      --config.env PYTHONPATH=/opt/dbmigrate/site-packages --config.env PYTHONUNBUFFERED=1 \
      --config.env PATH=/opt/dbmigrate/site-packages/bin:/usr/local/bin:/usr/bin:/bin \
      --config.user 65532:65532 --config.workingdir / \
      --config.entrypoint python3 --config.entrypoint -m --config.entrypoint dbmigrate
  fi
  import_image dbmigrate "$tag"
}

build_worker() {
  local major=$1 base top hash suite
  case $major in 15|16) suite=bookworm ;; 17) suite=trixie ;; 18) suite=sid ;; *) die "worker: no major $major" ;; esac
  if [[ $major == 16 ]]; then
    # no Debian suite here has 16: python3 on bookworm + the PyPI build's tree from postgres:16's rootfs
    base="$(py_rootfs worker16 bookworm "python3,zlib1g,libreadline8")"
    local pg16; pg16="$(. "$IMAGES_DIR/postgres/build.sh"; pg_rootfs 16)"
    if [[ ! -x $base/usr/lib/postgresql/16/bin/pg_dump || "$(cat "$base/.pg16" 2>/dev/null)" != "$(cat "$pg16/.recipe")" ]]; then
      mkdir -p "$base/usr/lib/postgresql"
      rm -rf "$base/usr/lib/postgresql/16" "$base/usr/lib/pgserver.libs"
      cp -a "$pg16/usr/lib/postgresql/16" "$base/usr/lib/postgresql/16"
      cp -a "$pg16/usr/lib/pgserver.libs" "$base/usr/lib/pgserver.libs"
      cat "$pg16/.recipe" > "$base/.pg16"
    fi
  else
    base="$(py_rootfs "worker$major" "$suite" "python3,postgresql-client-$major")"
  fi
  [[ -x $base/usr/lib/postgresql/$major/bin/pg_dump ]] || die "worker $major: no pg_dump in $base"
  top="$(site_packages "$(rootfs_python "$base")")"
  hash="$(inputs_hash "$(cat "$base/.recipe")" "$(cat "$base/.pg16" 2>/dev/null)" "$top" "${BASH_SOURCE[0]}")"
  if ! fresh dbmigrate-worker "$major" "$hash"; then
    pack2 dbmigrate-worker "$major" "$hash" "$base" "$top" \
      --config.env PYTHONPATH=/opt/dbmigrate/site-packages --config.env PYTHONUNBUFFERED=1 \
      --config.env "PATH=/usr/lib/postgresql/$major/bin:/opt/dbmigrate/site-packages/bin:/usr/local/bin:/usr/bin:/bin" \
      --config.env "PG_MAJOR=$major" --config.env LANG=C.UTF-8 \
      --config.user 999:999 --config.workingdir /
  fi
  import_image dbmigrate-worker "$major"
}
