"""Stream table rows from source to target with parallel COPY, all in one source snapshot.

Why not pg_dump's data files: writing every row to disk and reading it back costs as much as
the load itself, and pg_restore cannot start before pg_dump ends. Here workers pipe
``COPY ... TO STDOUT`` into ``COPY ... FROM STDIN``, biggest tables first: binary when every
column type is built in, else text (the same text pg_dump would write); big pieces through
a pipe between two psql processes, small tables through this process.

A table loaded whole is loaded in one target transaction that first truncates it, so the rows
can be written frozen and, on a ``wal_level=minimal`` target, without WAL. A table too big for
one worker is split into block ranges (``ctid``) loaded side by side, which rules out the
truncate (its lock would serialise them): the database was created empty by this copy, and a
failed copy drops it, so nothing is ever merged either way. Splitting thus costs the WAL of
every row, which on a ``wal_level=minimal`` target outweighs the parallelism on few cores: there
only very big tables are split (``split_bytes``, chosen by copy.py).

The schema, sequences, large objects, indexes and constraints come from the target's
pg_dump/pg_restore (copy.py). The copy may start while the schema is still being created:
a ``Release`` tells which tables exist (committed) so far.
"""

from __future__ import annotations

import heapq
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ...redact import redact
from . import commands
from . import stream_sql as q
from .conninfo import ConnInfo
from .db import Row, connect, fetch

log = logging.getLogger(__name__)

# Pieces at least this big go through a psql pipe (about 3x faster than relaying CopyData
# messages in Python); smaller ones through this process (a process pair per table would cost
# more than it saves on thousands of small tables).
PIPE_BYTES = 4 * 1024 * 1024
# Tables at least twice this big are split into pieces of about this size (at most one per job).
CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class StreamTable:
    schema: str
    name: str
    bytes: int
    blocks: int
    columns: list[str]
    binary: bool


@dataclass(frozen=True)
class Piece:
    table: StreamTable
    first_block: int | None = None   # None, None: the whole table
    end_block: int | None = None     # None after first_block: to the end

    @property
    def whole(self) -> bool:
        return self.first_block is None

    @property
    def bytes(self) -> int:
        if self.whole or not self.table.blocks:
            return self.table.bytes
        end = self.table.blocks if self.end_block is None else self.end_block
        return self.table.bytes * (end - (self.first_block or 0)) // self.table.blocks


def fetch_at(source: ConnInfo, dbname: str, snapshot: str, query: str,
             params: list[Any] | None = None) -> list[Row]:
    """Rows of a catalog query as of the copy's exported snapshot."""
    with connect(source, dbname) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(q.set_snapshot(snapshot))
        return fetch(conn, query, params)


def tables(source: ConnInfo, dbname: str, snapshot: str) -> list[StreamTable]:
    return [StreamTable(**r) for r in fetch_at(source, dbname, snapshot, q.TABLES)]


def independent_tables(source: ConnInfo, dbname: str, snapshot: str) -> set[tuple[str, str]]:
    """(schema, name) of the tables the schema restore may create side by side
    (``q.INDEPENDENT_TABLES``), as of the copy's snapshot."""
    return {(r["schema"], r["name"])
            for r in fetch_at(source, dbname, snapshot, q.INDEPENDENT_TABLES)}


def plan(todo: list[StreamTable], jobs: int, chunk_bytes: int = CHUNK_BYTES,
         split_bytes: int | None = None) -> list[Piece]:
    """Pieces, biggest first. Tables of at least ``split_bytes`` (default: two chunks) are
    split in up to ``jobs`` pieces of at least ``chunk_bytes``. The last piece of a split
    table is open-ended, so rows in blocks beyond the planned count are never missed."""
    pieces: list[Piece] = []
    for t in todo:
        n = min(jobs, t.bytes // chunk_bytes, t.blocks)
        if n < 2 or (split_bytes is not None and t.bytes < split_bytes):
            pieces.append(Piece(t))
            continue
        bounds = [t.blocks * i // n for i in range(n)]
        for i, first in enumerate(bounds):
            pieces.append(Piece(t, first, bounds[i + 1] if i + 1 < n else None))
    return sorted(pieces, key=lambda p: p.bytes, reverse=True)


class Release:
    """Tables the schema restore has created and committed, for the row copy to start on.
    ``close()`` when the restore ends: every table is then released, or none more when it
    failed (the copy stops)."""

    def __init__(self, *, everything: bool = False) -> None:
        self.cond = threading.Condition()
        self._new: list[tuple[str, str]] = []
        self.closed = everything
        self.failed = False

    def add(self, tables: set[tuple[str, str]]) -> None:
        with self.cond:
            self._new.extend(tables)
            self.cond.notify_all()

    def close(self, *, failed: bool = False) -> None:
        with self.cond:
            self.closed = True
            self.failed = failed
            self.cond.notify_all()

    def take_new(self) -> list[tuple[str, str]]:
        """The tables released since the last call (its one consumer: ``stream``). Call with
        ``cond`` held."""
        new, self._new = self._new, []
        return new


class _Queue:
    """Pieces of released tables, biggest first, and those of tables not released yet.
    Picking one costs a heap pop, not a scan of every pending piece (quadratic in the
    tables: with the BEGIN/COMMIT dropped below, this process's CPU for 2000 small tables fell
    from 0.75 s to 0.55 s, measured)."""

    def __init__(self, pieces: list[Piece]) -> None:
        self._waiting: dict[tuple[str, str], list[tuple[int, int, Piece]]] = {}
        for i, p in enumerate(pieces):  # ``plan`` order (biggest first) breaks ties
            self._waiting.setdefault((p.table.schema, p.table.name), []).append((-p.bytes, i, p))
        self._ready: list[tuple[int, int, Piece]] = []

    def promote(self, gate: Release) -> None:
        """Make the pieces of newly released tables (every table once ``gate`` is closed)
        ready. Call with ``gate.cond`` held."""
        keys = list(self._waiting) if gate.closed else gate.take_new()
        for k in keys:
            for item in self._waiting.pop(k, []):
                heapq.heappush(self._ready, item)

    def pop(self) -> Piece | None:
        return heapq.heappop(self._ready)[2] if self._ready else None

    def __bool__(self) -> bool:
        return bool(self._ready or self._waiting)


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


def _sql(p: Piece, truncate: bool) -> tuple[str, str | None, str]:
    """(copy out, truncate or None, copy in) statements for a piece; with ``truncate`` the
    load empties the table first and writes the rows frozen."""
    t = p.table
    out = q.copy_out(t.schema, t.name, t.columns, t.binary, p.first_block, p.end_block)
    trunc = q.truncate(t.schema, t.name).as_string(None) if truncate else None
    inn = q.copy_in(t.schema, t.name, t.columns, t.binary, freeze=truncate)
    return out.as_string(None), trunc, inn.as_string(None)


def _copy_in_process(src: psycopg.Connection[tuple[object, ...]],
                     tgt: psycopg.Connection[tuple[object, ...]], p: Piece) -> None:
    """Small tables: no truncate, for a few rows a new relation file costs more than the
    WAL it saves. ``tgt`` is in autocommit: the COPY is its own transaction (a failure
    half way sends CopyFail, nothing of it stays), without a BEGIN and a COMMIT to wait for."""
    out, _, inn = _sql(p, truncate=False)
    with tgt.cursor() as tcur, src.cursor() as scur, \
            tcur.copy(inn.encode()) as cin, scur.copy(out.encode()) as cout:
        for chunk in cout:
            cin.write(chunk)


def _copy_piped(source: ConnInfo, target: ConnInfo, dbname: str, snapshot: str, p: Piece,
                bindir: Path | None, toast_compression: str | None) -> None:
    out_sql, truncate, in_sql = _sql(p, truncate=p.whole)
    out = commands.copy_out(bindir, source, dbname, snapshot, out_sql)
    inn = commands.copy_in(bindir, target, dbname, truncate, in_sql,
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
        raise RuntimeError(f"copy of {p.table.schema}.{p.table.name} failed: "
                           + redact(f"{err1.strip()} {p2.stderr.strip()}"))


def stream(source: ConnInfo, target: ConnInfo, dbname: str, snapshot: str, todo: list[StreamTable],
           jobs: int, on_done: Callable[[StreamTable], None], *, bindir: Path | None = None,
           toast_compression: str | None = None, chunk_bytes: int = CHUNK_BYTES,
           pipe_bytes: int = PIPE_BYTES, release: Release | None = None,
           split_bytes: int | None = None) -> None:
    """Copy ``todo`` with ``jobs`` workers, biggest released piece first; ``on_done`` runs
    (serialised) once per table, when its last piece is in. ``toast_compression``: how the
    target compresses long values of columns without a compression of their own (lz4 is
    several times faster than pglz). ``release``: the tables that exist so far (None: all).
    ``split_bytes``: see ``plan``. The first worker error stops the others and is raised."""
    gate = release or Release(everything=True)
    pieces = plan(todo, jobs, chunk_bytes, split_bytes)
    left = {(t.schema, t.name): 0 for t in todo}
    for p in pieces:
        left[(p.table.schema, p.table.name)] += 1
    pending = _Queue(pieces)
    errors: list[BaseException] = []
    opts = "-c synchronous_commit=off" + (
        f" -c default_toast_compression={toast_compression}" if toast_compression else "")

    def take() -> Piece | None:
        with gate.cond:
            while not errors and not gate.failed and pending:
                pending.promote(gate)
                if (p := pending.pop()) is not None:
                    return p
                gate.cond.wait(1.0)
            return None

    def finished(p: Piece) -> None:
        with gate.cond:
            key = (p.table.schema, p.table.name)
            left[key] -= 1
            if left[key] == 0:
                on_done(p.table)

    def worker() -> None:
        try:
            with psycopg.connect(source.db(dbname).conninfo()) as src, \
                    psycopg.connect(target.db(dbname).conninfo(), autocommit=True,
                                    options=opts) as tgt:
                src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                src.execute(q.set_snapshot(snapshot))
                while (p := take()) is not None:
                    t0 = time.monotonic()
                    if p.bytes >= pipe_bytes:
                        _copy_piped(source, target, dbname, snapshot, p, bindir, toast_compression)
                    else:
                        _copy_in_process(src, tgt, p)
                    log.debug("copied %s.%s blocks %s-%s (%d bytes) in %.2fs", p.table.schema,
                              p.table.name, p.first_block, p.end_block, p.bytes,
                              time.monotonic() - t0)
                    finished(p)
        except BaseException as e:  # handed to the caller below
            with gate.cond:
                errors.append(e)
                gate.cond.notify_all()

    threads = [threading.Thread(target=worker, name=f"copy-{i}") for i in range(max(1, jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
