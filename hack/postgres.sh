#!/usr/bin/env bash
# Install the four PostgreSQL majors dbmigrate is tested against, each behind one uniform layout.
#
#   $CACHE/pg/<major>/bin/{postgres,initdb,pg_ctl,pg_dump,pg_restore,pg_dumpall,psql,pg_basebackup,...}
#   $CACHE/pg/<major>/VERSION        the full server version, e.g. "17.7"
#   $CACHE/rootfs/pg17, pg18         Debian rootfs (mmdebstrap) with postgresql-<major>; the cluster
#                                     helper reuses them as container image roots - never modified here
#   CACHE = ${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}
#
# Where each major comes from (DESIGN.md §6):
#   15  Debian bookworm postgresql-15 on the host (apt-get install; no "main" cluster is created)
#   16  PyPI pgserver 0.1.4 (16.2, --without-icu, only plpgsql+vector): unpacked with pip --target
#   17  Debian trixie postgresql-17, 18  Debian sid postgresql-18: both need a newer libc than the
#       bookworm host. We build a rootfs with mmdebstrap, then copy its PostgreSQL tree to
#       $CACHE/pg/<major>/root and point the copied ELF files at the rootfs' own dynamic loader and
#       libraries (patchelf --set-interpreter / --force-rpath). Why not a chroot: data directories,
#       dump directories and sockets then live on the host's filesystem as for 15/16, nothing has
#       to be bind-mounted (no mounts to leak when a test dies), and the rootfs stays pristine for
#       images. The host's libc is never touched: no trixie/sid apt source is added to the host.
#
# Servers refuse to run as root: tests run them as $DBMIGRATE_PG_USER (default "postgres", created
# by the postgresql-common package). When the cache sits under a home directory that user cannot
# traverse (/root is 0700), we grant it search-only (x) permission on the parent directories
# with an ACL, nothing more.
#
# Usage: hack/postgres.sh [MAJOR...]      (default: 15 16 17 18)
# Idempotent: a stamp per major makes a warm run take well under a second. Progress goes to
# stderr; stdout gets one line, the cache's pg directory.
set -euo pipefail

CACHE="${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}"
PGROOT="$CACHE/pg"
ROOTFS_DIR="$CACHE/rootfs"
PG_USER="${DBMIGRATE_PG_USER:-postgres}"
MIRROR="${DBMIGRATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PGSERVER_VERSION="0.1.4"
# Bump to force a rebuild of every major when this script's layout changes.
LAYOUT=3
TOOLS=(postgres initdb pg_ctl pg_dump pg_restore pg_dumpall psql pg_basebackup pg_isready
  pg_controldata pg_upgrade pgbench pg_recvlogical pg_createsubscriber)

log() { printf '[postgres.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

APT_UPDATED=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  # confold: keep our createcluster.conf (written before postgresql-common is installed).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
}

stamp_ok() { [[ -f "$PGROOT/$1/.stamp" && "$(cat "$PGROOT/$1/.stamp")" == "$LAYOUT" ]]; }
write_stamp() { echo "$LAYOUT" > "$PGROOT/$1/.stamp"; }

# bin/ holds symlinks: PostgreSQL resolves its own path through symlinks to find share/ and lib/.
link_tools() {
  local major="$1" src="$2" dst="$PGROOT/$1/bin"
  rm -rf "$dst"; mkdir -p "$dst"
  for t in "${TOOLS[@]}"; do
    [[ -x "$src/$t" ]] && ln -s "$src/$t" "$dst/$t"
  done
  for t in postgres initdb pg_ctl pg_dump pg_restore pg_dumpall psql pg_basebackup; do
    [[ -e "$dst/$t" ]] || die "$major: $t missing in $src"
  done
  "$dst/postgres" --version | awk '{print $3}' > "$PGROOT/$major/VERSION"
  log "$major: $(cat "$PGROOT/$major/VERSION") ready in $dst"
}

install_15() {
  if [[ ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
    # No "main" cluster: it would start a server on 5432 that nothing here wants.
    mkdir -p /etc/postgresql-common
    [[ -f /etc/postgresql-common/createcluster.conf ]] || echo "create_main_cluster = false" \
      > /etc/postgresql-common/createcluster.conf
    apt_install postgresql-15  # contrib (hstore, pgcrypto, ...) is part of it since Debian 10
  fi
  link_tools 15 /usr/lib/postgresql/15/bin
}

install_16() {
  local pkg="$PGROOT/16/pkg"
  if [[ ! -x "$pkg/pgserver/pginstall/bin/postgres" ]]; then
    log "16: pip install pgserver==$PGSERVER_VERSION"
    rm -rf "$pkg.tmp"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$pkg.tmp" \
      "pgserver==$PGSERVER_VERSION" >&2
    rm -rf "$pkg"; mv "$pkg.tmp" "$pkg"
  fi
  link_tools 16 "$pkg/pgserver/pginstall/bin"
}

build_rootfs() {
  local major="$1" suite="$2" dir="$ROOTFS_DIR/pg$1"
  [[ -f "$dir/.stamp" ]] && return 0
  apt_install mmdebstrap
  log "$major: mmdebstrap $suite with postgresql-$major into $dir (a few minutes)"
  if [[ -d "$dir.tmp" ]] && findmnt -rn -o TARGET | grep -q "^$dir.tmp"; then
    die "$dir.tmp still has mounts (an interrupted mmdebstrap?); unmount them first"
  fi
  rm -rf "$dir.tmp"; mkdir -p "$ROOTFS_DIR"
  # The main cluster made by the package's postinst is useless in an image: drop it.
  # Check-Valid-Until: the mirror may serve a frozen snapshot whose sid Release file has "expired";
  # signatures are still verified.
  mmdebstrap --variant=minbase --include="postgresql-$major,postgresql-client-$major" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook="rm -rf \"\$1/var/lib/postgresql/$major/main\" \"\$1/etc/postgresql/$major\"" \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    "$suite" "$dir.tmp" "$MIRROR" >&2
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  touch "$dir/.stamp"
}

# Copy the rootfs' PostgreSQL tree next to the other majors and make its ELF files load the
# rootfs' libc and libraries instead of the host's.
install_from_rootfs() {
  local major="$1" suite="$2" rootfs="$ROOTFS_DIR/pg$1" root="$PGROOT/$1/root"
  build_rootfs "$major" "$suite"
  apt_install patchelf
  local interp="$rootfs/usr/lib64/ld-linux-x86-64.so.2"
  [[ -e "$interp" ]] || interp="$rootfs/lib64/ld-linux-x86-64.so.2"
  [[ -e "$interp" ]] || die "$major: no dynamic loader in $rootfs"
  interp="$(readlink -f "$interp")"
  local rpath="$rootfs/usr/lib/x86_64-linux-gnu:$rootfs/usr/lib/postgresql/$major/lib"
  log "$major: relocating $rootfs/usr/lib/postgresql/$major into $root"
  rm -rf "$root.tmp"
  mkdir -p "$root.tmp/usr/lib/postgresql" "$root.tmp/usr/share/postgresql"
  cp -a "$rootfs/usr/lib/postgresql/$major" "$root.tmp/usr/lib/postgresql/"
  cp -a "$rootfs/usr/share/postgresql/$major" "$root.tmp/usr/share/postgresql/"
  local f
  for f in "$root.tmp/usr/lib/postgresql/$major/bin/"*; do
    [[ -L "$f" ]] && continue
    head -c4 "$f" | grep -q 'ELF' || continue
    patchelf --set-interpreter "$interp" --force-rpath --set-rpath "$rpath" "$f"
  done
  # Extension modules are dlopen()ed by the server; DT_RPATH (not RUNPATH) on the executable
  # already covers their dependencies, but the modules' own rpath makes that explicit.
  for f in "$root.tmp/usr/lib/postgresql/$major/lib/"*.so; do
    patchelf --force-rpath --set-rpath "$rpath" "$f" 2>/dev/null || true
  done
  rm -rf "$root"; mv "$root.tmp" "$root"
  link_tools "$major" "$root/usr/lib/postgresql/$major/bin"
}

# The server user must reach the binaries: grant search (x) on each parent directory it lacks.
grant_traverse() {
  id "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist (set DBMIGRATE_PG_USER)"
  if runuser -u "$PG_USER" -- test -x "$PGROOT"; then return 0; fi
  apt_install acl
  # Top-down, so that each test sees its parents already searchable.
  local d="" part
  IFS=/ read -ra parts <<< "${PGROOT#/}"
  for part in "${parts[@]}"; do
    d="$d/$part"
    if ! runuser -u "$PG_USER" -- test -x "$d"; then
      log "granting $PG_USER search permission on $d (ACL u:$PG_USER:x)"
      setfacl -m "u:$PG_USER:x" "$d"
    fi
  done
}

majors=("$@")
((${#majors[@]})) || majors=(15 16 17 18)
[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, mmdebstrap)"
mkdir -p "$PGROOT"
# One run at a time: a second run must never clean a rootfs that mmdebstrap is still filling
# (it has /proc, /sys and /dev mounted inside while it works).
exec 9>"$CACHE/.postgres.sh.lock"
flock 9

# 15 first: its package creates the postgres user the others run as.
for m in "${majors[@]}"; do
  if stamp_ok "$m"; then continue; fi
  mkdir -p "$PGROOT/$m"
  case "$m" in
    15) install_15 ;;
    16) install_16 ;;
    17) install_from_rootfs 17 trixie ;;
    18) install_from_rootfs 18 sid ;;
    *) die "unsupported major $m" ;;
  esac
  write_stamp "$m"
done
if ! id "$PG_USER" >/dev/null 2>&1 && [[ "$PG_USER" == postgres ]]; then
  # Only 16/17/18 requested on a fresh machine: create the user the 15 package would have made.
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
grant_traverse
echo "$PGROOT"
