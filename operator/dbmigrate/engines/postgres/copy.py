"""Snapshot copy of a whole server (test mode and the offline ``dump`` strategy).

Steps:
  0. size the parallelism to the source's free connections (budget.py: refused if none fit);
  1. inventory the source (databases, tables and their sizes, for progress);
  2. on the target, create the bookkeeping database ``_dbmigrate`` and its ``copy_state``;
  3. roles, memberships and role settings: the TARGET's ``pg_dumpall --roles-only`` against
     the source, made re-runnable (``roles.rewrite``), applied with psql in one transaction;
  4. each database not yet marked done, two at a time, biggest first (``lanes``): drop whatever
     a previous attempt left (a half-restored database is redone, never merged), then, all as
     of one exported source snapshot:
     a. the TARGET's ``pg_dump -Fd`` of everything but table rows (schema, sequence values,
        large objects, materialized view refreshes);
     b. its pre-data section as a filtered script (predata.py): CREATE DATABASE with the
        source's properties, then the schema (schema_load.py), the biggest tables first,
     c. while the rows are streamed by parallel COPY (stream.py), each table's as soon as
        the table is committed (measured, 1 GB with 2000 small tables: 19-23 s instead of
        22-29 s: creating the schema is one core's work, the rows use the others); a big
        table's indexes and key constraints are built as soon as its rows are in
        (postdata.py), beside the rows still loading;
     d. ``pg_restore -j`` of data and the rest of post-data: sequences, large objects, the
        other indexes and constraints, triggers, in parallel;
     then mark it done. With ``data="dump"`` a-d are the plain ``pg_dump -Fd -j`` /
     ``pg_restore -j`` of everything (slower: rows go through files);
  5. drop ``_dbmigrate``: the target holds exactly the source's databases.

Progress: bytes and tables count loaded table rows, against the source's table sizes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from ..base import Progress, ProgressCallback, VerificationDiff
from . import commands, schema_load
from . import copy_sql as q
from .budget import SHARE, Parallelism, fit
from .checks import STATE_DB
from .conninfo import ConnInfo
from .db import connect, execute, fetch, fetch_one
from .inventory import Database, Inventory, Table, collect, connection_slots
from .postdata import EarlyIndexes, table_keys
from .postdata_plan import per_table, without
from .predata import CANDIDATES, filter_script, split_create
from .roles import rewrite
from .runner import run
from .stream import (
    CHUNK_BYTES,
    PIPE_BYTES,
    Release,
    Snapshot,
    StreamTable,
    independent_tables,
    stream,
)
from .stream import tables as stream_tables
from .stream_sql import patterns
from .tally import Tally
from .verify import VerifyOptions, verify_database

log = logging.getLogger(__name__)

# pg_restore -j logs "finished item <id> TABLE DATA <name>" (name without schema); serial
# runs log 'processing data for table "<schema>.<name>"'.
_FINISHED_DATA = re.compile(r'finished item \d+ TABLE DATA (.+)$')
_SERIAL_DATA = re.compile(r'processing data for table "(?:[^"]*)\.(.+)"$')
_DUMPING = re.compile(r'dumping contents of table "(.+)"$')


@dataclass
class CopyOptions:
    workdir: Path                     # dumps go to workdir/<db>; removed after each restore
    bindir: Path | None = None        # the TARGET version's binaries (None: from PATH)
    # Twice the cores: a streamed table keeps two server backends and two psql busy, and
    # each waits on the other part of the time (measured: 4 jobs beat 2 on 2 cores).
    jobs: int = field(default_factory=lambda: 2 * (os.cpu_count() or 1))
    # Databases copied side by side (biggest first), each with ``jobs`` row workers.
    lanes: int = 2
    # The share of the source's free connection slots the copy may take (budget.py): fewer
    # lanes, then fewer row workers, when ``lanes`` x ``jobs`` would take more. None: no limit.
    source_share: float | None = SHARE
    # Row workers and pg_dump jobs against the source (None: ``jobs``); set from the budget.
    source_jobs: int | None = None
    schema_only: bool = False         # the online strategy: tables are filled by replication
    # "stream": rows piped source -> target by parallel COPY (stream.py), the rest through
    # pg_dump/pg_restore; "dump": everything through pg_dump -Fd -j / pg_restore -j.
    data: str = "stream"
    # Compression of long values written by the streamed copy, if the target supports it
    # (pgserver's 16 lacks lz4: then the target's default).
    toast_compression: str | None = "lz4"
    chunk_bytes: int = CHUNK_BYTES    # split streamed tables into pieces of this size
    pipe_bytes: int = PIPE_BYTES      # pieces this big go through a psql pipe
    # On a wal_level=minimal target (test mode) a table loaded whole, in one transaction that
    # truncates it first, is written without WAL; a split table is WAL-logged. Measured (1 GB
    # of which one 620 MB table, 2 cores): loaded whole 15.8-18.0 s, split 21.1-21.7 s (831 MB
    # of WAL instead of 121). There only tables this big (minutes of one stream) are split.
    split_bytes_without_wal: int = 8 * 1024**3
    # Tables at least this big get their indexes and key constraints built as soon as their
    # rows are in, beside the rows still loading (postdata.py); the others' come at the end.
    early_index_bytes: int = PIPE_BYTES
    # Verify each database right after its copy, against the same source snapshot when the
    # rows were streamed (so a copy of a live source verifies exactly); None: no verification.
    verify: VerifyOptions | None = None


@dataclass
class CopyResult:
    databases: dict[str, float] = field(default_factory=dict)  # name -> seconds (0: already done)
    bytes_total: int = 0
    seconds: float = 0.0
    lanes: int = 0                    # databases copied side by side, and row workers each:
    jobs: int = 0                     # what the source's free connections allowed
    # Per-database verification (CopyOptions.verify) of the databases copied by this run.
    diff: VerificationDiff = field(default_factory=VerificationDiff)


def snapshot_copy(source: ConnInfo, target: ConnInfo, opts: CopyOptions,
                  progress: ProgressCallback | None = None,
                  inventory: Inventory | None = None) -> CopyResult:
    started = time.monotonic()
    # First: a source without room for the copy is refused before the target is touched.
    opts = _within_budget(source, opts)
    with ThreadPoolExecutor(1, thread_name_prefix="state") as side:
        # The target's bookkeeping database is created while the source is inventoried.
        state = side.submit(_prepare_state, target)
        inv = inventory or collect(source, exclude=frozenset({STATE_DB}))
        done = state.result()
    sizes = {d.name: [] if opts.schema_only else [t.bytes for t in d.tables if t.kind == "r"]
             for d in inv.databases}
    tally = Tally(Progress(bytes_total=sum(sum(v) for v in sizes.values()),
                           tables_total=sum(len(v) for v in sizes.values()),
                           databases_total=len(inv.databases)), progress)
    if "roles" not in done:
        tally.say("roles")
        copy_roles(source, target, opts)
        _mark(target, "roles", None)

    result = CopyResult(bytes_total=tally.prog.bytes_total, lanes=opts.lanes,
                        jobs=_source_jobs(opts))
    unknown = unknown_column_options(target)
    todo = []
    for d in inv.databases:
        if f"db:{d.name}" in done:
            tally.add(d.name, sum(sizes[d.name]), len(sizes[d.name]))
            tally.database_done()
            result.databases[d.name] = 0.0
            # Its verification, made against the snapshot it was copied from, was kept: a
            # difference found before an interruption is still reported.
            stored = done[f"db:{d.name}"]
            if stored:
                result.diff.extend(VerificationDiff(**stored))
        else:
            todo.append(d)

    def one(d: Database) -> tuple[float, VerificationDiff]:
        t0 = time.monotonic()
        diff = VerificationDiff()
        copy_database(source, target, d.name, opts, tally, _SizeBook(d.tables), unknown, diff)
        _mark(target, f"db:{d.name}", diff if opts.verify is not None and not opts.schema_only else None)
        tally.database_done()
        return time.monotonic() - t0, diff

    # Biggest first, side by side: a small database (the 'postgres' one, or a hosting
    # customer's many) costs a second of process starts and round trips, not of CPU, and
    # copies while the big one streams.
    todo.sort(key=lambda d: d.bytes, reverse=True)
    with ThreadPoolExecutor(max(1, opts.lanes), thread_name_prefix="database") as pool:
        futures = {d.name: pool.submit(one, d) for d in todo}
        for f in as_completed(futures.values()):
            if not f.cancelled() and f.exception() is not None:
                for other in futures.values():  # the databases not started yet stay undone
                    other.cancel()
        for name, f in futures.items():  # the first database (biggest first) that failed
            if f.cancelled():
                continue
            seconds, diff = f.result()
            result.databases[name] = seconds
            result.diff.extend(diff)
    tally.say("")
    finish(target)
    result.seconds = time.monotonic() - started
    return result


def _within_budget(source: ConnInfo, opts: CopyOptions) -> CopyOptions:
    """``opts`` with as many lanes and source jobs as the source's free connections allow
    (budget.py); raises ``budget.TooFewConnections`` when not even one job fits."""
    if opts.source_share is None:
        return opts
    slots = connection_slots(source)
    wanted = Parallelism(opts.lanes, _source_jobs(opts))
    got = fit(slots, wanted.lanes, wanted.jobs, share=opts.source_share)
    if got != wanted:
        log.warning("the source accepts %d more connections (%s): copying %d database(s) at a "
                    "time with %d row workers each, instead of %d with %d", slots.free,
                    slots.describe(), got.lanes, got.jobs, wanted.lanes, wanted.jobs)
    return dataclasses.replace(opts, lanes=got.lanes, source_jobs=got.jobs)


def _source_jobs(opts: CopyOptions) -> int:
    return opts.source_jobs or opts.jobs


class _SizeBook:
    """Table sizes by bare name, to turn pg_restore's "finished item" lines into bytes."""

    def __init__(self, tables: list[Table]) -> None:
        self._by_name: dict[str, list[int]] = {}
        for t in tables:
            if t.kind == "r":
                self._by_name.setdefault(t.name, []).append(t.bytes)

    def take(self, name: str) -> int | None:
        sizes = self._by_name.get(name)
        return sizes.pop() if sizes else None


def copy_roles(source: ConnInfo, target: ConnInfo, opts: CopyOptions) -> None:
    opts.workdir.mkdir(parents=True, exist_ok=True)
    raw = opts.workdir / "roles.sql"
    run(commands.dumpall_roles(opts.bindir, source, raw))
    fixed = opts.workdir / "roles.apply.sql"
    fixed.write_text(rewrite(raw.read_text(), skip_role=target.user))
    run(commands.psql_file(opts.bindir, target, fixed, STATE_DB))
    raw.unlink()
    fixed.unlink()


def copy_database(source: ConnInfo, target: ConnInfo, dbname: str, opts: CopyOptions,
                  tally: Tally, book: _SizeBook, unknown: set[str],
                  diff: VerificationDiff | None = None) -> None:
    """``unknown``: column options the target refuses (``unknown_column_options``)."""
    with connect(target, STATE_DB) as conn:
        execute(conn, q.drop_database(dbname))
    dumpdir = opts.workdir / f"db-{dbname.encode().hex()}"  # any database name is a safe path
    shutil.rmtree(dumpdir, ignore_errors=True)
    dumped = 0

    def on_dump(line: str) -> None:
        nonlocal dumped
        if _DUMPING.search(line):
            dumped += 1
            tally.say(f"dumping {dbname} ({dumped} tables)")

    def on_restore(line: str) -> None:
        m = _FINISHED_DATA.search(line) or _SERIAL_DATA.search(line)
        if m:
            size = book.take(m.group(1))
            if size is not None:
                tally.add(dbname, size, 1, f"restoring {dbname}")

    try:
        if opts.data == "stream" and not opts.schema_only:
            try:
                _copy_streamed(source, target, dbname, dumpdir, opts, tally, unknown, diff)
            except schema_load.SchemaError as e:
                if not e.reordered:
                    raise
                # Our dependency analysis missed something: the plain script order always works.
                log.warning("creating the tables of %s biggest first failed (%s); copying it "
                            "again with its schema in plain order", dbname, e)
                tally.take_back(dbname)
                with connect(target, STATE_DB) as conn:
                    execute(conn, q.drop_database(dbname))
                shutil.rmtree(dumpdir, ignore_errors=True)
                _copy_streamed(source, target, dbname, dumpdir, opts, tally, unknown, diff,
                               reorder=False)
        else:
            _copy_dumped(source, target, dbname, dumpdir, opts, unknown, on_dump, on_restore)
            if opts.verify is not None and diff is not None and not opts.schema_only:
                diff.extend(verify_database(source, target, dbname, opts.verify))
    finally:
        shutil.rmtree(dumpdir, ignore_errors=True)


def _create_database(target: ConnInfo, dbname: str, dumpdir: Path, opts: CopyOptions,
                     unknown: set[str]) -> tuple[str, int]:
    """CREATE DATABASE with the source's properties, from the dump's pre-data section (run
    by psql: it cannot be in a transaction). Returns the rest of that section, the schema
    (for ``schema_load.apply``), without the column options the target refuses, and how
    many options were dropped."""
    script = dumpdir / "pre-data.sql"
    run(commands.restore_pre_data_script(opts.bindir, dumpdir, script))
    text, dropped = filter_script(script.read_text(), unknown)
    create, schema = split_create(text)
    create_sql = dumpdir / "create.sql"
    create_sql.write_text(create)
    run(commands.psql_script(opts.bindir, target, create_sql, STATE_DB))
    return schema, dropped


def _copy_streamed(source: ConnInfo, target: ConnInfo, dbname: str, dumpdir: Path,
                   opts: CopyOptions, tally: Tally, unknown: set[str],
                   diff: VerificationDiff | None = None, *,
                   reorder: bool = True) -> None:
    """Everything but table rows through the target's pg_dump/pg_restore, the rows streamed
    (stream.py), all as of one source snapshot. The rows of a table start as soon as the
    table exists: the schema is created meanwhile, biggest tables first when ``reorder``
    (schema_load.py)."""
    toast = opts.toast_compression if opts.toast_compression and _supports(
        target, "default_toast_compression", opts.toast_compression) else None
    with Snapshot(source, dbname) as snap:
        todo = stream_tables(source, dbname, snap.id)
        t0 = time.monotonic()
        with ThreadPoolExecutor(1, thread_name_prefix="catalog") as side:
            # The catalog queries the schema load and the early indexes need run beside the
            # schema dump (which needs ``todo``): same snapshot, the source has cores to spare.
            independent_f = side.submit(lambda: independent_tables(source, dbname, snap.id)
                                        if reorder else None)
            keys_f = side.submit(table_keys, source, dbname, snap.id,
                                 [(t.schema, t.name) for t in todo if t.bytes >= opts.early_index_bytes])
            run(commands.dump_db(opts.bindir, source, dbname, dumpdir, 1, snapshot=snap.id,
                                 exclude_data=patterns([(t.schema, t.name) for t in todo])))
            t1 = time.monotonic()
            schema, dropped = _create_database(target, dbname, dumpdir, opts, unknown)
            independent, keys = independent_f.result(), keys_f.result()

        def done(t: StreamTable) -> None:
            tally.add(dbname, t.bytes, 1, f"copying {dbname}")
            early.add((t.schema, t.name))

        split_bytes = opts.split_bytes_without_wal if _wal_level(target) == "minimal" else None
        toc = dumpdir / "toc.list"
        run(commands.toc_list(opts.bindir, dumpdir, toc))
        entries = toc.read_text()
        early = EarlyIndexes(opts.bindir, target, dbname, dumpdir, per_table(entries, keys))
        release = Release()
        failed: list[BaseException] = []
        stats: list[schema_load.SchemaStats] = []

        def create_schema() -> None:
            try:
                stats.append(schema_load.apply(
                    target, dbname, schema, independent=independent, on_created=release.add,
                    priority={(t.schema, t.name): t.bytes for t in todo}))
            except BaseException as e:  # raised below, after the copy workers stop
                failed.append(e)
                release.close(failed=True)
            else:
                release.close()

        creator = threading.Thread(target=create_schema, name="schema")
        creator.start()
        try:
            stream(source, target, dbname, snap.id, todo, _source_jobs(opts), done, bindir=opts.bindir,
                   toast_compression=toast, chunk_bytes=opts.chunk_bytes,
                   pipe_bytes=opts.pipe_bytes, release=release, split_bytes=split_bytes)
        finally:
            creator.join()
            early_failed = early.finish()
        if failed:
            raise failed[0]
        if early_failed:
            raise early_failed
        t2 = time.monotonic()
        rest = dumpdir / "rest.list"
        rest.write_text(without(entries, {o for k in early.done for o in keys[k]}))
        run(commands.restore_data(opts.bindir, target, dumpdir, dbname, opts.jobs, listfile=rest))
        if opts.verify is not None and diff is not None:
            # Still inside the snapshot: the source is compared as it was copied.
            diff.extend(verify_database(source, target, dbname, opts.verify, snapshot=snap.id))
    log.info("copied %s: schema dump %.1fs, schema %.1fs (%d items, %d reordered, %d options "
             "dropped) and rows %.1fs side by side (indexes of %d tables meanwhile), "
             "indexes/constraints %.1fs", dbname, t1 - t0, stats[0].seconds, stats[0].entries,
             stats[0].reordered_tables, dropped, t2 - t1, len(early.done), time.monotonic() - t2)


def _copy_dumped(source: ConnInfo, target: ConnInfo, dbname: str, dumpdir: Path,
                 opts: CopyOptions, unknown: set[str], on_dump: Callable[[str], None],
                 on_restore: Callable[[str], None]) -> None:
    """The plain way: the target's pg_dump -Fd -j, then pg_restore -j."""
    t0 = time.monotonic()
    run(commands.dump_db(opts.bindir, source, dbname, dumpdir, _source_jobs(opts),
                         schema_only=opts.schema_only), on_dump)
    t1 = time.monotonic()
    script = dumpdir / "pre-data.sql"
    run(commands.restore_pre_data_script(opts.bindir, dumpdir, script))
    _, dropped = filter_script(script.read_text(), unknown)
    if not dropped:
        # One pg_restore run: tables it creates itself get their COPY wrapped in a
        # transaction with a TRUNCATE, which skips WAL on a wal_level=minimal target.
        run(commands.restore_db(opts.bindir, target, dumpdir, opts.jobs,
                                maintenance_db=STATE_DB), on_restore)
    else:
        schema, _ = _create_database(target, dbname, dumpdir, opts, unknown)
        schema_load.apply(target, dbname, schema)
        run(commands.restore_data(opts.bindir, target, dumpdir, dbname, opts.jobs), on_restore)
    log.info("copied %s: dump %.1fs, restore %.1fs (%d column options dropped)", dbname,
             t1 - t0, time.monotonic() - t1, dropped)


def unknown_column_options(target: ConnInfo) -> set[str]:
    out: set[str] = set()
    with connect(target, STATE_DB) as conn:
        for option in CANDIDATES:
            try:
                with conn.transaction(force_rollback=True):
                    execute(conn, q.probe_column_option(option))
            except psycopg.errors.InvalidParameterValue:
                out.add(option)
    return out


def _wal_level(target: ConnInfo) -> str:
    with connect(target, STATE_DB) as conn:
        return str(fetch_one(conn, q.WAL_LEVEL)["wal_level"])


def _supports(target: ConnInfo, setting: str, value: str) -> bool:
    with connect(target, STATE_DB) as conn:
        try:
            execute(conn, q.set_setting(setting, value))
        except psycopg.errors.InvalidParameterValue:
            return False
    return True


def _prepare_state(target: ConnInfo) -> dict[str, dict[str, list[str]] | None]:
    """Items already done -> the database's stored verification (None: none made)."""
    # template1, not postgres: an interrupted run may have dropped 'postgres' to redo it.
    with connect(target, "template1") as conn:
        if not fetch(conn, q.DATABASE_EXISTS, [STATE_DB]):
            execute(conn, q.create_database(STATE_DB))
    with connect(target, STATE_DB) as conn:
        execute(conn, q.STATE_TABLE)
        return {r["item"]: r["diff"] for r in fetch(conn, q.DONE_ITEMS)}


def _mark(target: ConnInfo, item: str, diff: VerificationDiff | None) -> None:
    with connect(target, STATE_DB) as conn:
        execute(conn, q.MARK_DONE, [item, Jsonb(dataclasses.asdict(diff)) if diff else None])


def finish(target: ConnInfo) -> None:
    """Drop the bookkeeping database; connects to template1 since 'postgres' may be mid-copy."""
    with connect(target, "template1") as conn:
        execute(conn, q.drop_database(STATE_DB))
