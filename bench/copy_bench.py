"""Copy throughput, 15 -> 18: dbmigrate's snapshot copy vs `pg_dump | psql` (same 18 binaries)
vs `pg_basebackup` of the same source (the physical copy: the practical limit).

Steps: generate the source database (a few wide indexed tables, thousands of small tables, a
big table with TOAST data; size DBMIGRATE_BENCH_MB, default 1024); then, each against a fresh
18 target with identical settings, time each method; print a table, write JSON.

    .venv/bin/python bench/copy_bench.py           # ~1 GB
    DBMIGRATE_BENCH_MB=200 .venv/bin/python bench/copy_bench.py   # quick
    DBMIGRATE_BENCH_REPEAT=3 ...   # each method 3 times, interleaved; the best run counts
    DBMIGRATE_BENCH_DIR=/dev/shm ...  # where the servers' data go (default: the temp directory)

Each method's CPU seconds (its servers, its client processes, this process) are reported
beside its time, and "cores busy" (CPU seconds / seconds): on a machine with few cores the
copy is CPU-bound, and a method's time is its CPU divided by the cores it keeps busy.

Where the data go: DBMIGRATE_BENCH_DIR, else the system's temporary directory. ``make bench``
sets it to a journaled ext4 (hack/bench-fs.sh, a loop-mounted image), as database volumes
are. This machine's root filesystem is ext4 without a journal: only there the kernel skips the
inodes freed in the last 5-300 s when it creates a file, reading each candidate
(``recently_deleted``, seen with ``perf record -a -g``), so right after thousands of deletions
(a test suite, or the previous run's cleanup) creating 2000 tables took 7 s instead of 1.4 s,
and one pg_dump | psql 7.7 s then 2.9 s in two runs a minute apart. The benchmark also deletes
the runs' files at its end (``LATER``), not between runs, and writes each run's files out
(sync) before the next starts; run it on a quiet machine. On a tmpfs
(DBMIGRATE_BENCH_DIR=/dev/shm) nothing waits for storage and the comparison is one of CPU
alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import BENCH_SETTINGS, CpuMeter, log, table, write_result

from dbmigrate.engines.postgres.copy import CopyOptions, snapshot_copy
from dbmigrate.engines.postgres.verify import VerifyOptions, verify
from pgtools import PgServer, start_server

MB = int(os.environ.get("DBMIGRATE_BENCH_MB", "1024"))
REPEAT = int(os.environ.get("DBMIGRATE_BENCH_REPEAT", "1"))
JOBS = int(os.environ.get("DBMIGRATE_BENCH_JOBS", str(2 * (os.cpu_count() or 1))))
DB = "bench"


# Data directories of finished runs, deleted when the benchmark ends, not before the next run.
# This machine's root filesystem is ext4 without a journal, where the kernel skips inodes freed
# in the last 30 s when it allocates one (``recently_deleted``), reading each candidate's inode:
# right after a run's 10000 files were deleted, every file the next run created cost up to 1 ms
# of CPU (perf: 10% of all samples of a copy), whichever method it timed.
LATER: list[Path] = []


def later(server: PgServer) -> None:
    """Stop a run's server, keep its files, and write them out now: left dirty, the kernel
    would write them back during the next run."""
    server.stop(remove=False)
    LATER.append(server.datadir.parent)
    os.sync()


def bench_dir() -> str:
    return os.environ.get("DBMIGRATE_BENCH_DIR") or tempfile.gettempdir()


def generate(src: PgServer) -> None:
    """~45% wide indexed tables, ~45% TOASTed documents, ~10% in thousands of small tables."""
    src.execute(f"CREATE DATABASE {DB}")
    wide_rows = int(MB * 0.45 * 1024 * 1024 / 3 / 300)   # ~300 bytes per row with indexes
    docs = int(MB * 0.45 * 1024 * 1024 / 6500)            # ~6.4 kB of incompressible text each
    small = max(100, int(2000 * MB / 1024))
    for i in range(3):
        src.execute(f"""
CREATE TABLE wide{i} (id bigint PRIMARY KEY, a int, b int, c bigint, d numeric(12,2), e text,
    f text, g timestamptz, h date, k boolean, m double precision, n jsonb);
INSERT INTO wide{i} SELECT g, g % 1000, (g * 7) % 100000, g * 13, (g % 100000) / 7.0,
    md5(g::text), 'name ' || (g % 5000), '2026-01-01'::timestamptz + g * interval '1 second',
    DATE '2026-01-01' + g % 365, g % 2 = 0, g / 3.0, jsonb_build_object('g', g)
FROM generate_series(1, {wide_rows}) g;
CREATE INDEX wide{i}_a ON wide{i} (a, b);
CREATE INDEX wide{i}_e ON wide{i} (e);""", DB)
        log(f"wide{i}: {wide_rows} rows")
    src.execute(f"""
CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
INSERT INTO docs SELECT g, 'doc ' || g,
    (SELECT string_agg(md5(random()::text || g || s), '') FROM generate_series(1, 200) s)
FROM generate_series(1, {docs}) g;""", DB)
    log(f"docs: {docs} TOASTed rows")
    src.execute("CREATE SCHEMA small", DB)
    stmts = "".join(
        f"CREATE TABLE small.t{i} (id int PRIMARY KEY, v text); "
        f"INSERT INTO small.t{i} SELECT g, 'v' || g FROM generate_series(1, 20) g; "
        for i in range(small))
    src.execute(stmts, DB)
    log(f"small: {small} tables")
    src.execute("VACUUM ANALYZE", DB)


# Every target gets the same settings. wal_level=minimal: a copy target (the test-mode server,
# or the new server of the offline strategy before it goes live) needs no WAL for replicas
# during the load; every method runs against an identical server.
TARGET_SETTINGS = {**BENCH_SETTINGS, "wal_level": "minimal", "max_wal_senders": "0",
                   "max_replication_slots": "0"}


# The same server writing WAL for every row (wal_level=logical): an execute target loaded as
# it is (strategy dump below dumpStrategy.walFreeLoadMinBytes). Tables are split then.
LOGGED_TARGET_SETTINGS = {**BENCH_SETTINGS, "wal_level": "logical"}


def fresh_target(settings: dict[str, str] = TARGET_SETTINGS) -> PgServer:
    return start_server(18, settings)


class _Phases(logging.Handler):
    """Keeps the copy's own account of where the time went ("copied bench: ...")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith(f"copied {DB}:"):
            self.lines.append(msg)


PHASES = _Phases()
logging.getLogger("dbmigrate.engines.postgres.copy").addHandler(PHASES)
logging.getLogger("dbmigrate.engines.postgres.copy").setLevel(logging.INFO)


def run_ours(src: PgServer, work: Path, data: str,
             settings: dict[str, str] = TARGET_SETTINGS) -> tuple[float, float, PgServer]:
    """(seconds, CPU seconds, the target)"""
    tgt = fresh_target(settings)
    cpu = CpuMeter(src.proc.pid, tgt.proc.pid)
    t0 = time.monotonic()
    snapshot_copy(src.ci(), tgt.ci(), CopyOptions(workdir=work / "ours", bindir=tgt.bindir, jobs=JOBS,
                                                  data=data))
    seconds = time.monotonic() - t0
    cpu_s = cpu.seconds()
    if PHASES.lines:
        log(f"  {seconds:.1f}s, {cpu_s:.1f} CPU s; {PHASES.lines[-1]}")
    return seconds, cpu_s, tgt


def run_dump_psql(src: PgServer) -> tuple[float, float, PgServer]:
    tgt = fresh_target()
    b = tgt.bindir
    cpu = CpuMeter(src.proc.pid, tgt.proc.pid)
    t0 = time.monotonic()
    # The textbook one-liner, with the target's binaries: create the database, pipe the dump.
    env = {"PGPASSWORD": src.password, "PATH": "/usr/bin:/bin"}
    pipeline = (f'"{b}/pg_dump" --create -h {src.host} -p {src.port} -U {src.user} {DB} | '
                f'"{b}/psql" -X -q -v ON_ERROR_STOP=1 -h {tgt.host} -p {tgt.port} -U {tgt.user} '
                f'-d postgres >/dev/null')
    subprocess.run(pipeline, shell=True, check=True, env=env)  # noqa: S602 - the pipe is the point
    seconds = time.monotonic() - t0
    return seconds, cpu.seconds(), tgt


def run_basebackup(src: PgServer, work: Path) -> tuple[float, float, int]:
    out = Path(tempfile.mkdtemp(prefix="basebackup-", dir=work))
    cpu = CpuMeter(src.proc.pid)
    t0 = time.monotonic()
    subprocess.run([str(src.bindir / "pg_basebackup"), "-h", src.host, "-p", str(src.port),
                    "-U", src.user, "-D", str(out), "-X", "stream", "-c", "fast", "--no-sync"],
                   check=True, env={"PGPASSWORD": src.password, "PATH": "/usr/bin:/bin"})
    seconds = time.monotonic() - t0
    cpu_s = cpu.seconds()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    LATER.append(out)
    os.sync()
    return seconds, cpu_s, size


def main() -> None:
    tempfile.tempdir = bench_dir()  # the servers' data directories (pgtools) and the dumps
    log(f"data under {tempfile.tempdir}")
    work = Path(tempfile.mkdtemp(prefix="dbmigrate-bench-"))
    src = start_server(15, BENCH_SETTINGS)
    try:
        log(f"generating ~{MB} MB")
        generate(src)
        db_bytes = int(str(src.scalar(f"SELECT pg_database_size('{DB}')")))
        all_bytes = int(str(src.scalar("SELECT sum(pg_database_size(oid)) FROM pg_database")))
        log(f"database {db_bytes / 2**20:.0f} MB, cluster {all_bytes / 2**20:.0f} MB")
        src.execute("CHECKPOINT")
        os.sync()

        # Each method REPEAT times, interleaved; the best run of each counts (on a shared
        # machine the best is the one least disturbed by others).
        runs: dict[str, list[float]] = {"ours": [], "logged": [], "dump": [], "naive": [], "base": []}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        clean = True
        for r in range(REPEAT):
            log(f"[{r + 1}/{REPEAT}] dbmigrate snapshot copy (rows streamed)")
            s, c, tgt = run_ours(src, work, "stream")
            runs["ours"].append(s)
            cpu["ours"].append(c)
            clean = clean and verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=100_000)).clean
            later(tgt)
            log(f"[{r + 1}/{REPEAT}] dbmigrate snapshot copy into a target that writes WAL (wal_level=logical)")
            s, c, tgt = run_ours(src, work, "stream", LOGGED_TARGET_SETTINGS)
            runs["logged"].append(s)
            cpu["logged"].append(c)
            clean = clean and verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=100_000)).clean
            later(tgt)
            log(f"[{r + 1}/{REPEAT}] dbmigrate snapshot copy (pg_dump -Fd -j / pg_restore -j only)")
            s, c, tgt = run_ours(src, work, "dump")
            runs["dump"].append(s)
            cpu["dump"].append(c)
            clean = clean and verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=100_000)).clean
            later(tgt)
            log(f"[{r + 1}/{REPEAT}] pg_dump | psql")
            s, c, tgt = run_dump_psql(src)
            runs["naive"].append(s)
            cpu["naive"].append(c)
            later(tgt)
            log(f"[{r + 1}/{REPEAT}] pg_basebackup")
            s, c, base_bytes = run_basebackup(src, work)
            runs["base"].append(s)
            cpu["base"].append(c)
        ours_s, logged_s, dump_s, naive_s, base_s = (min(runs[k]) for k in ("ours", "logged", "dump", "naive",
                                                                             "base"))
        # The CPU of each method's best run.
        best_cpu = {k: cpu[k][runs[k].index(min(runs[k]))] for k in runs}
    finally:
        src.stop()
        for d in LATER:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    mbps = {"dbmigrate": db_bytes / 2**20 / ours_s, "dbmigrate_logged": db_bytes / 2**20 / logged_s,
            "dbmigrate_dump": db_bytes / 2**20 / dump_s,
            "pg_dump | psql": db_bytes / 2**20 / naive_s, "pg_basebackup": base_bytes / 2**20 / base_s}
    def cpu_cells(key: str, seconds: float) -> list[str]:
        return [f"{best_cpu[key]:.1f}", f"{best_cpu[key] / seconds:.2f}"]

    rows = [["method", "seconds", "MB", "MB/s", "CPU s", "cores busy"],
            ["dbmigrate (default: rows streamed)", f"{ours_s:.1f}", f"{db_bytes / 2**20:.0f}",
             f"{mbps['dbmigrate']:.1f}", *cpu_cells("ours", ours_s)],
            ["dbmigrate into a target writing WAL (wal_level=logical)", f"{logged_s:.1f}",
             f"{db_bytes / 2**20:.0f}", f"{mbps['dbmigrate_logged']:.1f}", *cpu_cells("logged", logged_s)],
            ["dbmigrate data=dump (pg_dump -Fd -j, pg_restore -j)", f"{dump_s:.1f}",
             f"{db_bytes / 2**20:.0f}", f"{mbps['dbmigrate_dump']:.1f}", *cpu_cells("dump", dump_s)],
            ["pg_dump | psql", f"{naive_s:.1f}", f"{db_bytes / 2**20:.0f}", f"{mbps['pg_dump | psql']:.1f}",
             *cpu_cells("naive", naive_s)],
            ["pg_basebackup (whole cluster)", f"{base_s:.1f}", f"{base_bytes / 2**20:.0f}",
             f"{mbps['pg_basebackup']:.1f}", *cpu_cells("base", base_s)]]
    r_naive = mbps["dbmigrate"] / mbps["pg_dump | psql"]
    r_base = mbps["dbmigrate"] / mbps["pg_basebackup"]
    print(table(rows))
    print(f"dbmigrate / pg_dump|psql = {r_naive:.2f}x (target >= 2.0)   "
          f"dbmigrate / pg_basebackup = {r_base:.2f}x (target >= 0.5)   "
          f"without WAL / with WAL = {logged_s / ours_s:.2f}x faster   "
          f"verification clean: {clean}   jobs={JOBS}   data under {tempfile.tempdir}   "
          f"load average {os.getloadavg()[0]:.1f}")
    path = write_result("copy", {
        "size_mb_requested": MB, "database_bytes": db_bytes, "jobs": JOBS,
        "seconds": {"dbmigrate": ours_s, "dbmigrate_wal_logical_target": logged_s,
                    "dbmigrate_dump": dump_s, "pg_dump_psql": naive_s,
                    "pg_basebackup": base_s},
        "load_average": os.getloadavg(), "data_dir": tempfile.tempdir,
        "mb_per_s": mbps, "ratio_vs_pg_dump_psql": r_naive, "ratio_vs_pg_basebackup": r_base,
        "targets": {"ratio_vs_pg_dump_psql": 2.0, "ratio_vs_pg_basebackup": 0.5},
        "verification_clean": clean, "all_runs_seconds": runs, "repeat": REPEAT,
        # CPU seconds of the best run of each method (servers, clients, this process), and of
        # every run; "cores busy" in the table is CPU seconds / seconds.
        "cpu_seconds": best_cpu, "all_runs_cpu_seconds": cpu,
        "phases": PHASES.lines,
    })
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
