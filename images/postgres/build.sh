# postgres:<major> images (15, 16, 17, 18) built from Debian, following the official image:
# uid/gid 999 postgres, en_US.UTF-8 locale, PATH/PGDATA/LANG/PG_MAJOR env, port 5432,
# STOPSIGNAL SIGINT, ENTRYPOINT docker-entrypoint.sh, CMD postgres.
#   15: Debian bookworm postgresql-15          17: Debian trixie postgresql-17
#   16: Debian bookworm base + PyPI pgserver   18: Debian sid postgresql-18
#       (16.2, --without-icu, plpgsql+vector only; no Debian suite here has 16)
# Layer 1 is the rootfs (mmdebstrap, cached under $CACHE/images/rootfs/pg<major>, rebuilt when
# its recipe changes); layer 2 holds the entrypoint, so changing the script leaves layer 1 as is.
# shellcheck shell=bash

. "$IMAGES_DIR/postgres/rootfs.sh"

build_postgres() {
  local major=$1 rootfs hash entry
  rootfs="$(pg_rootfs "$major")"
  entry="$IMAGES_DIR/postgres/docker-entrypoint.sh"
  hash="$(inputs_hash "$(cat "$rootfs/.recipe")" "$entry" "${BASH_SOURCE[0]}" v1)"
  if ! fresh postgres "$major" "$hash"; then
    local top; top="$(mktemp -d)"; chmod 755 "$top"
    install -D -m 755 "$entry" "$top/usr/local/bin/docker-entrypoint.sh"
    # As the official image: the volume dir exists in the image, owned by postgres, mode 1777, so
    # a container started as uid 999 without a mounted volume can initdb into it (the runtime
    # copies it, ownership included, into the anonymous volume it makes for VOLUME).
    local vol; vol="$(pg_volume "$major")"
    mkdir -p "$top$vol" "$top/docker-entrypoint-initdb.d"
    chown 999:999 "$top/var/lib/postgresql" "$top$vol"
    chmod 1777 "$top$vol"
    local work; work="$(mktemp -d "$OCI_OUT/.build-postgres-XXXX")"
    log "image postgres:$major: packing"
    local start=$SECONDS pgdata; pgdata="$(pg_data "$major")"
    umoci init --layout "$work/layout"
    umoci new --image "$work/layout:$major"
    umoci insert --image "$work/layout:$major" "$rootfs" /
    umoci insert --image "$work/layout:$major" "$top" /
    umoci config --image "$work/layout:$major" --author dbmigrate \
      --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$major/bin" \
      --config.env "PG_MAJOR=$major" --config.env "LANG=en_US.utf8" --config.env "PGDATA=$pgdata" \
      --config.entrypoint docker-entrypoint.sh --config.cmd postgres \
      --config.exposedports 5432/tcp --config.volume "$(pg_volume "$major")" \
      --config.stopsignal SIGINT \
      --config.label "dev.dbmigrate.inputs=$hash"
    umoci gc --layout "$work/layout"
    tar -C "$work/layout" -cf "$OCI_OUT/postgres-$major.oci.tar.tmp" .
    mv "$OCI_OUT/postgres-$major.oci.tar.tmp" "$OCI_OUT/postgres-$major.oci.tar"
    echo "$hash" > "$OCI_OUT/postgres-$major.stamp"
    rm -rf "$work" "$top"
    log "image postgres:$major: packed in $((SECONDS - start))s ($(du -h "$OCI_OUT/postgres-$major.oci.tar" | cut -f1))"
  fi
  import_image postgres "$major"
}
