"""Stream table rows from source to target with parallel COPY, all in one source snapshot.

Why not pg_dump's data files: writing every row to disk and reading it back costs as much as
the load itself, and pg_restore cannot start before pg_dump ends. Here each worker pipes
``COPY ... TO STDOUT`` into ``COPY ... FROM STDIN`` (a psql pipe for big tables) (binary when every column type is built
in, else text - the same text pg_dump would write), biggest tables first. Each table is
loaded in one target transaction that first truncates it: a re-run never merges rows, and on a
``wal_level=minimal`` target the load skips WAL. The schema, sequences, large objects,
indexes and constraints still come from the target's pg_dump/pg_restore (see copy.py).
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from . import commands
from . import stream_sql as q
from .conninfo import ConnInfo
from .db import connect, fetch

log = logging.getLogger(__name__)

# Tables at least this big go through a psql pipe, smaller ones through this process (a
# process pair per table would cost more than it saves on thousands of small tables).
PIPE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class StreamTable:
    schema: str
    name: str
    bytes: int
    columns: list[str]
    binary: bool


def tables(source: ConnInfo, dbname: str, snapshot: str) -> list[StreamTable]:
    with connect(source, dbname) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(q.set_snapshot(snapshot))
        return [StreamTable(**r) for r in fetch(conn, q.TABLES)]


class Snapshot:
    """Hold an exported snapshot open on the source for as long as the copy needs it."""

    def __init__(self, source: ConnInfo, dbname: str) -> None:
        self._conn = psycopg.connect(source.db(dbname).conninfo(), autocommit=True)
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = self._conn.execute(q.EXPORT_SNAPSHOT).fetchone()
        assert row is not None
        self.id = str(row[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_one(src: psycopg.Connection[tuple[object, ...]], tgt: psycopg.Connection[tuple[object, ...]],
              t: StreamTable) -> None:
    """Small tables: relay through this process. No TRUNCATE/FREEZE: the database was created
    empty by this copy, and for a few rows a new relation file would cost more than WAL."""
    with tgt.transaction(), tgt.cursor() as tcur, src.cursor() as scur, \
            tcur.copy(q.copy_in(t.schema, t.name, t.columns, t.binary, freeze=False)) as cin, \
            scur.copy(q.copy_out(t.schema, t.name, t.columns, t.binary)) as cout:
        for chunk in cout:
            cin.write(chunk)


def _copy_piped(source: ConnInfo, target: ConnInfo, dbname: str, snapshot: str, t: StreamTable,
                bindir: Path | None, toast_compression: str | None) -> None:
    """Big tables: two psql processes joined by a pipe, so no row passes through Python
    (about 3x faster than relaying CopyData messages one by one)."""
    out = commands.copy_out(bindir, source, dbname, snapshot,
                            q.copy_out(t.schema, t.name, t.columns, t.binary).as_string(None))
    inn = commands.copy_in(bindir, target, dbname, q.truncate(t.schema, t.name).as_string(None),
                           q.copy_in(t.schema, t.name, t.columns, t.binary).as_string(None),
                           toast_compression=toast_compression)
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    with subprocess.Popen(out.argv, env={**base, **out.env}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as p1:
        assert p1.stdout is not None
        p2 = subprocess.run(inn.argv, env={**base, **inn.env}, stdin=p1.stdout,
                            capture_output=True, text=True, check=False)
        p1.stdout.close()
        err1 = p1.stderr.read().decode(errors="replace") if p1.stderr else ""
        code1 = p1.wait()
    if code1 or p2.returncode:
        raise RuntimeError(f"copy of {t.schema}.{t.name} failed: {err1.strip()} {p2.stderr.strip()}")


def stream(source: ConnInfo, target: ConnInfo, dbname: str, snapshot: str, todo: list[StreamTable],
           jobs: int, on_done: Callable[[StreamTable], None], *, bindir: Path | None = None,
           pipe_bytes: int = PIPE_BYTES, toast_compression: str | None = None) -> None:
    """Copy ``todo`` with ``jobs`` workers; ``on_done`` runs (serialised) after each table.
    ``toast_compression``: how the target compresses long values of columns without a
    compression of their own (lz4 is several times faster than the default pglz).
    The first worker error stops the others and is raised."""
    opts = "-c synchronous_commit=off" + (
        f" -c default_toast_compression={toast_compression}" if toast_compression else "")
    work: queue.Queue[StreamTable] = queue.Queue()
    for t in todo:
        work.put(t)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(source.db(dbname).conninfo()) as src, \
                    psycopg.connect(target.db(dbname).conninfo(), autocommit=True,
                                    options=opts) as tgt:
                src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                src.execute(q.set_snapshot(snapshot))
                while not errors:
                    try:
                        t = work.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.monotonic()
                    if t.bytes >= pipe_bytes:
                        _copy_piped(source, target, dbname, snapshot, t, bindir, toast_compression)
                    else:
                        _copy_one(src, tgt, t)
                    log.debug("copied %s.%s (%d bytes) in %.2fs", t.schema, t.name, t.bytes,
                              time.monotonic() - t0)
                    with lock:
                        on_done(t)
        except BaseException as e:  # handed to the caller below
            errors.append(e)

    threads = [threading.Thread(target=worker, name=f"copy-{i}") for i in range(max(1, jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
