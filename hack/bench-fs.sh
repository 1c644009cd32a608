#!/usr/bin/env bash
# A journaled ext4 filesystem for the copy benchmark's data (bench/copy_bench.py), mounted at
# $DBMIGRATE_BENCH_MNT (default /mnt/dbmigrate-bench); prints the directory to use, or nothing
# (exit 0) where it cannot be had: not root, no loop device, no mkfs.ext4.
#
# Why: this machine's root filesystem is ext4 WITHOUT a journal. Only there, ext4's inode
# allocator skips every inode freed in the last 5-300 s, reading each one (recently_deleted(),
# checked only when the filesystem has no journal), so creating a file after a burst of
# deletions costs up to a millisecond of CPU. A copy of 2000 tables creates ~10000 files:
# measured, one pg_dump | psql took 2.9 s and 7.7 s in two consecutive runs on the same data,
# depending on what had been deleted just before. Database volumes are journaled (ext4's
# default, xfs), so the benchmark measures on one: a sparse image file under the cache,
# loop-mounted. Idempotent: an existing mount is reused.
set -euo pipefail
CACHE="${DBMIGRATE_CACHE:-$HOME/.cache/dbmigrate}"
MNT="${DBMIGRATE_BENCH_MNT:-/mnt/dbmigrate-bench}"
IMG="$CACHE/bench-fs.ext4"
# Sparse, and mounted with discard so deleted files give their blocks back to the host: it
# takes only what the benchmark holds at once (DBMIGRATE_BENCH_REPEAT=3 at 1 GB: ~25 GB,
# every run's data directories are kept to the end, see copy_bench.LATER).
SIZE="${DBMIGRATE_BENCH_FS_SIZE:-64G}"

log() { printf '[bench-fs %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if mountpoint -q "$MNT" 2>/dev/null; then echo "$MNT"; exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v mkfs.ext4 >/dev/null || ! command -v losetup >/dev/null; then
  log "no journaled filesystem for the benchmark (needs root, mkfs.ext4, losetup): using the temp directory"
  exit 0
fi
mkdir -p "$CACHE" "$MNT"
if [ ! -f "$IMG" ]; then
  truncate -s "$SIZE" "$IMG"
  # lazy init: no zeroing of inode tables at mkfs time (the image stays sparse).
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$IMG" >&2
fi
if ! mount -o loop,discard "$IMG" "$MNT" 2>/dev/null; then
  log "cannot loop-mount $IMG: using the temp directory"
  exit 0
fi
chmod 1777 "$MNT"
log "journaled ext4 (sparse image $IMG) mounted at $MNT"
echo "$MNT"
