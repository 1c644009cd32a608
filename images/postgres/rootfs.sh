# The Debian rootfs under each postgres:<major> image (layer 1), cached under
# $CACHE/images/rootfs/pg<major> and rebuilt only when this file, the suite or the package list
# change (the entrypoint and image config live in build.sh: editing them only repacks).
# shellcheck shell=bash

PG_MIRROR="${DBMIGRATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PGSERVER_VERSION="${PGSERVER_VERSION:-0.1.4}"

pg_suite() { case $1 in 15|16) echo bookworm ;; 17) echo trixie ;; 18) echo sid ;; esac; }
pg_pkgs()  { case $1 in 16) echo "locales,zlib1g,libreadline8" ;; *) echo "locales,postgresql-$1,postgresql-client-$1" ;; esac; }
pg_volume() { case $1 in 18) echo "/var/lib/postgresql" ;; *) echo "/var/lib/postgresql/data" ;; esac; }
pg_data()  { case $1 in 18) echo "/var/lib/postgresql/18/docker" ;; *) echo "/var/lib/postgresql/data" ;; esac; }

# pg_rootfs MAJOR -> path of a finished rootfs for that major (built when missing or stale)
pg_rootfs() {
  local major=$1 suite pkgs dir recipe
  suite="$(pg_suite "$major")"; pkgs="$(pg_pkgs "$major")"
  dir="$OCI_OUT/rootfs/pg$major"
  recipe="$(inputs_hash "$suite" "$pkgs" "$PGSERVER_VERSION" "$IMAGES_DIR/postgres/rootfs.sh")"
  if [[ -f $dir/.recipe && "$(cat "$dir/.recipe")" == "$recipe" ]]; then echo "$dir"; return 0; fi
  log "postgres $major: mmdebstrap $suite ($pkgs) -> $dir (a few minutes)"
  local start=$SECONDS
  if [[ -d $dir.tmp ]] && awk -v d="$dir.tmp/" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
    die "$dir.tmp still has mounts (an interrupted mmdebstrap?); unmount them first"
  fi
  rm -rf "$dir.tmp"; mkdir -p "$OCI_OUT/rootfs"
  # The official image's first steps: user/group postgres with a fixed uid/gid 999 before any
  # package can create one with another id; then the en_US.UTF-8 locale; listen on all
  # addresses by default (the sample initdb copies); a socket dir anyone may use.
  mmdebstrap --variant=minbase --include="$pkgs" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --essential-hook='echo "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" >> "$1/etc/passwd"; echo "postgres:x:999:" >> "$1/etc/group"; mkdir -p "$1/etc/postgresql-common"; echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.conf"' \
    --customize-hook='a=/usr/share/locale/locale.alias; if [ -f "$1$a" ]; then a="-A $a"; else a=; fi; chroot "$1" localedef -i en_US -c -f UTF-8 $a en_US.UTF-8' \
    --customize-hook='mkdir -p "$1/var/lib/postgresql" "$1/docker-entrypoint-initdb.d" && chown 999:999 "$1/var/lib/postgresql"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old' \
    "$suite" "$dir.tmp" "$PG_MIRROR" >&2 || die "postgres $major: mmdebstrap failed"
  if [[ $major == 16 ]]; then
    # the PyPI build: a relocatable install tree (bin, lib, share) at the Debian path
    local whl; whl="$(mktemp -d)"
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$whl" "pgserver==$PGSERVER_VERSION" >&2
    python3 - "$whl"/pgserver-*.whl "$dir.tmp/usr/lib/postgresql/16" <<'PY'
import os, stat, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
# the install tree, and the wheel's vendored libraries (libpq-<hash>.so...), which the binaries
# find through RPATH $ORIGIN/../../../pgserver.libs: /usr/lib/pgserver.libs from .../16/bin
prefixes = {"pgserver/pginstall/": dest, "pgserver.libs/": os.path.join(dest, "..", "..", "pgserver.libs")}
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        prefix = next((p for p in prefixes if info.filename.startswith(p)), None)
        if prefix is None or info.is_dir():
            continue
        out = os.path.normpath(os.path.join(prefixes[prefix], info.filename[len(prefix):]))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        os.chmod(out, mode or 0o644)
PY
    rm -rf "$whl"
    chmod 755 "$dir.tmp/usr/lib/postgresql/16/bin/"*
    # every binary must resolve its libraries inside the rootfs
    local b; for b in "$dir.tmp"/usr/lib/postgresql/16/bin/*; do
      if chroot "$dir.tmp" ldd "${b#"$dir.tmp"}" 2>/dev/null | grep -q "not found"; then
        die "postgres 16: $(basename "$b") has unresolved libraries: $(chroot "$dir.tmp" ldd "${b#"$dir.tmp"}" | grep 'not found' | head -3)"
      fi
    done
  fi
  # The socket dir, writable by any uid (the official image's 3777). /var/run is a symlink to
  # /run: never follow it from the host (an absolute link would lead to the host's own /run).
  local rundir="$dir.tmp/var/run"
  [[ -L $rundir ]] && rundir="$dir.tmp/run"
  mkdir -p "$rundir/postgresql"; chown 999:999 "$rundir/postgresql"; chmod 3777 "$rundir/postgresql"
  # listen_addresses = '*' in the sample that initdb copies (the official image does this)
  local sample
  for sample in "$dir.tmp"/usr/share/postgresql/"$major"/postgresql.conf.sample "$dir.tmp"/usr/lib/postgresql/16/share/postgresql/postgresql.conf.sample; do
    [[ -f $sample ]] && sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$sample"
  done
  [[ -x "$dir.tmp/usr/lib/postgresql/$major/bin/postgres" ]] || die "postgres $major: no server binary in the rootfs"
  echo "$recipe" > "$dir.tmp/.recipe"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  log "postgres $major: rootfs in $((SECONDS - start))s ($(du -sh "$dir" | cut -f1))"
  echo "$dir"
}

