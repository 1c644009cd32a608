"""Probe of a copy method dbmigrate does NOT offer yet: a physical copy upgraded in place.

``pg_basebackup`` of the source, one start and stop of the copy with the old binaries (it
replays its WAL and shuts down cleanly, which pg_upgrade requires), ``initdb`` of the new
major, then ``pg_upgrade --link`` (the copy's files become the new server's). This is what
the issue's "0.5x pg_basebackup" target would need; the figures tell how far it gets on the
copy benchmark's database (same generator, same settings), against pg_basebackup alone.

    .venv/bin/python bench/upgrade_probe.py            # ~1 GB, data in the temp directory
    DBMIGRATE_BENCH_MB=200 DBMIGRATE_BENCH_DIR=/dev/shm .venv/bin/python bench/upgrade_probe.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import BENCH_SETTINGS, log, table, write_result
from copy_bench import DB, MB, bench_dir, generate

from pgtools import PG_USER, PgServer, _chown_tree, bindir, free_port, start_server


def real_bindir(major: int) -> Path:
    """The installation's own directory: pg_upgrade needs tools (pg_resetwal) that the test
    layout (hack/postgres.sh) does not link."""
    return Path(os.path.realpath(bindir(major) / "pg_ctl")).parent


def main() -> None:
    tempfile.tempdir = bench_dir()
    log(f"data under {tempfile.tempdir}")
    old_bin, new_bin = real_bindir(15), real_bindir(18)
    src: PgServer = start_server(15, BENCH_SETTINGS)
    base = Path(tempfile.mkdtemp(prefix="dbmigrate-upgrade-"))
    env = {"PGPASSWORD": src.password, "PATH": "/usr/bin:/bin"}

    def run(argv: list[str]) -> None:
        done = subprocess.run(argv, user=PG_USER, cwd=base, env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raise SystemExit(f"{argv[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    try:
        with (src.datadir / "pg_hba.conf").open("a") as f:
            f.write("host replication all 127.0.0.1/32 scram-sha-256\n")
        src.execute("SELECT pg_reload_conf()")
        log(f"generating ~{MB} MB")
        generate(src)
        src.execute("CHECKPOINT")
        _chown_tree(base)
        seconds: dict[str, float] = {}

        def basebackup(into: Path) -> float:
            t = time.monotonic()
            run([str(old_bin / "pg_basebackup"), "-h", src.host, "-p", str(src.port), "-U", src.user,
                 "-D", str(into), "-X", "stream", "-c", "fast", "--no-sync"])
            return time.monotonic() - t

        log("pg_basebackup alone")
        seconds["pg_basebackup alone"] = basebackup(base / "alone")
        shutil.rmtree(base / "alone")

        log("physical copy + pg_upgrade --link")
        old, new = base / "old", base / "new"
        t0 = time.monotonic()
        seconds["1. pg_basebackup"] = basebackup(old)
        t = time.monotonic()
        opts = f"-c port={free_port()} -c listen_addresses='' -c unix_socket_directories='{base}'"
        run([str(old_bin / "pg_ctl"), "-D", str(old), "-w", "-o", opts, "-l", str(base / "old.log"), "start"])
        run([str(old_bin / "pg_ctl"), "-D", str(old), "-w", "-m", "fast", "stop"])
        seconds["2. recovery, clean stop"] = time.monotonic() - t
        t = time.monotonic()
        pwfile = base / "pw"
        pwfile.write_text(src.password)
        _chown_tree(base)
        # Same bootstrap user, encoding, locale and checksum setting as the source's initdb.
        run([str(new_bin / "initdb"), "-D", str(new), "-U", src.user, "--pwfile", str(pwfile), "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync", "--no-instructions", "--no-data-checksums"])
        seconds["3. initdb"] = time.monotonic() - t
        t = time.monotonic()
        run([str(new_bin / "pg_upgrade"), "-b", str(old_bin), "-B", str(new_bin), "-d", str(old), "-D", str(new),
             "--link", "-j", str(os.cpu_count() or 1), "-p", str(free_port()), "-P", str(free_port()),
             "-U", src.user, "--no-sync"])
        seconds["4. pg_upgrade --link"] = time.monotonic() - t
        seconds["physical + pg_upgrade, total"] = time.monotonic() - t0
        db_bytes = int(str(src.scalar(f"SELECT pg_database_size('{DB}')")))
    finally:
        src.stop()
        shutil.rmtree(base, ignore_errors=True)

    ratio = seconds["pg_basebackup alone"] / seconds["physical + pg_upgrade, total"]
    print(table([["step", "seconds"], *[[k, f"{v:.1f}"] for k, v in seconds.items()]]))
    print(f"physical + pg_upgrade / pg_basebackup = {ratio:.2f}x (the copy target is >= 0.5)   "
          f"database {db_bytes / 2**20:.0f} MB   data under {tempfile.tempdir}")
    path = write_result("upgrade-probe", {"size_mb_requested": MB, "database_bytes": db_bytes,
                                          "seconds": seconds, "ratio_vs_pg_basebackup": ratio,
                                          "data_dir": tempfile.tempdir})
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
