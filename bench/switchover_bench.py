"""Switchover write interruption, 15 -> 18, through a TCP proxy standing in for the Service.

Each round: a fresh 15 source and 18 target; a writer commits numbered rows through the proxy
(DBMIGRATE_BENCH_TPS, default 400/s); schema copy, logical replication, initial sync; then
``logical.switchover`` with the repoint = proxy switch. Measured per round: the longest
interval without a successful commit around the switchover, and the acknowledged rows missing
on the target. DBMIGRATE_BENCH_ROUNDS (default 5).

    .venv/bin/python bench/switchover_bench.py
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from common import log, table, write_result
from tcpproxy import Proxy

from dbmigrate.engines.postgres import logical
from dbmigrate.engines.postgres.copy import CopyOptions, snapshot_copy
from dbmigrate.engines.postgres.inventory import collect
from dbmigrate.engines.postgres.logical import Names
from pgtools import start_server

ROUNDS = int(os.environ.get("DBMIGRATE_BENCH_ROUNDS", "5"))
TPS = int(os.environ.get("DBMIGRATE_BENCH_TPS", "400"))


class Writer(threading.Thread):
    """Commits numbered rows as fast as allowed; records when each was acknowledged."""

    def __init__(self, dsn: str) -> None:
        super().__init__(name="writer", daemon=True)
        self.dsn = dsn
        self.acked: list[tuple[int, float]] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                n += 1
                conn.execute("INSERT INTO ticks (n) VALUES (%s)", [n])
                self.acked.append((n, time.monotonic()))
                next_at += 1 / TPS
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()
            except psycopg.Error:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.005)
                next_at = time.monotonic()
        if conn is not None:
            conn.close()


def one_round(i: int) -> dict[str, float | int]:
    src, tgt = start_server(15), start_server(18)
    proxy = Proxy((src.host, src.port))
    try:
        src.execute("CREATE DATABASE app")
        src.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY, n bigint UNIQUE NOT NULL, "
                    "at timestamptz NOT NULL DEFAULT now(), pad text DEFAULT repeat('x', 100))", "app")
        dsn = (f"host=127.0.0.1 port={proxy.port} user={src.user} password={src.password} "
               "dbname=app")
        writer = Writer(dsn)
        writer.start()
        with tempfile.TemporaryDirectory(prefix="dbmigrate-swbench-") as work:
            snapshot_copy(src.ci(), tgt.ci(), CopyOptions(workdir=Path(work), bindir=tgt.bindir,
                                                          schema_only=True))
        names = [Names(d.name) for d in collect(src.ci()).databases]
        for n in names:
            logical.start(src.ci(), tgt.ci(), n)
        for n in names:
            logical.wait_until(lambda n=n: logical.initial_sync_done(tgt.ci(), n), 60, "sync")
            logical.wait_until(lambda n=n: logical.lag(src.ci(), n).bytes < 1 << 20, 60, "lag")
        time.sleep(1.0)
        t_fence = time.monotonic()
        result = logical.switchover(src.ci(), tgt.ci(), names,
                                    lambda: proxy.switch((tgt.host, tgt.port)),
                                    max_write_downtime=10)
        time.sleep(1.0)
        writer.stop.set()
        writer.join(10)
        acked = writer.acked
        times = [t for _, t in acked if t >= t_fence - 2]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        on_target = {int(str(r[0])) for r in tgt.execute("SELECT n FROM ticks", "app")}
        lost = sum(1 for n, _ in acked if n not in on_target)
        span = acked[-1][1] - acked[0][1]
        out: dict[str, float | int] = {
            "round": i, "max_gap_s": max(gaps), "switchover_s": result.fence_seconds,
            "acked": len(acked), "lost": lost, "tps": len(acked) / span, "errors": writer.errors,
            **{f"{k}_s": v for k, v in result.phases.items()}}
        log(f"round {i}: gap {out['max_gap_s']:.3f}s, lost {lost}, {out['tps']:.0f} tx/s, phases "
            + " ".join(f"{k} {v:.3f}s" for k, v in result.phases.items()))
        return out
    finally:
        proxy.close()
        src.stop()
        tgt.stop()


def main() -> None:
    rounds = [one_round(i + 1) for i in range(ROUNDS)]
    gaps = [float(r["max_gap_s"]) for r in rounds]
    lost = sum(int(r["lost"]) for r in rounds)
    rows = [["round", "max gap s", "fence->repoint s", "acked", "lost", "tx/s"]]
    rows += [[str(r["round"]), f"{r['max_gap_s']:.3f}", f"{r['switchover_s']:.3f}", str(r["acked"]),
              str(r["lost"]), f"{r['tps']:.0f}"] for r in rounds]
    print(table(rows))
    p50, mx = statistics.median(gaps), max(gaps)
    print(f"write interruption p50 {p50:.3f}s max {mx:.3f}s (target max <= 1.0)   "
          f"acknowledged rows lost: {lost} (target 0)")
    path = write_result("switchover", {
        "rounds": rounds, "gap_p50_s": p50, "gap_max_s": mx, "lost_total": lost,
        "writer_target_tps": TPS, "targets": {"gap_max_s": 1.0, "lost_total": 0}})
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
