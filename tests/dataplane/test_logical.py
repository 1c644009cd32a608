"""Online switchover primitives on real servers: replicate, fence, catch up, switch, clean up,
and the abort paths that must leave the source exactly as it was."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

import realistic
from dbmigrate.engines.postgres import logical
from dbmigrate.engines.postgres.copy import CopyOptions, snapshot_copy
from dbmigrate.engines.postgres.logical import Names
from dbmigrate.engines.postgres.verify import verify
from pgtools import PgServer, StartServer, fingerprint

DBS = list(realistic.DATABASES)


def _schema_copy(src: PgServer, tgt: PgServer, tmp_path: Path) -> None:
    snapshot_copy(src.ci(), tgt.ci(), CopyOptions(workdir=tmp_path / "w", bindir=tgt.bindir,
                                                  jobs=2, schema_only=True))


def _start_all(src: PgServer, tgt: PgServer) -> list[Names]:
    names = [Names(db) for db in DBS]
    for n in names:
        logical.start(src.ci(), tgt.ci(), n)
    for n in names:
        logical.wait_until(lambda n=n: logical.initial_sync_done(tgt.ci(), n), 60, "initial sync")
    return names


def test_replicate_fence_and_switch(pg_factory: StartServer, tmp_path: Path) -> None:
    src, tgt = pg_factory(15), pg_factory(18)
    realistic.load(src, logical_ready=True)
    _schema_copy(src, tgt, tmp_path)
    assert tgt.scalar("SELECT count(*) FROM sales.orders", "shop") == 0  # schema only
    names = _start_all(src, tgt)
    shop = next(n for n in names if n.dbname == "shop")
    assert tgt.scalar("SELECT count(*) FROM sales.orders", "shop") == 2000

    # Changes after the initial copy stream over, lag is measured and drains.
    tgt.execute(f"ALTER SUBSCRIPTION {shop.subscription} DISABLE", "shop")
    src.execute("INSERT INTO sales.orders (customer_id, placed) SELECT 1, '2026-02-02' "
                "FROM generate_series(1, 500); UPDATE sales.customers SET name = 'Ünïcode' WHERE id = 3;"
                "DELETE FROM sales.orders WHERE id = 5", "shop")
    assert logical.lag(src.ci(), shop).bytes > 0
    tgt.execute(f"ALTER SUBSCRIPTION {shop.subscription} ENABLE", "shop")
    logical.wait_until(lambda: logical.lag(src.ci(), shop).bytes == 0, 30, "lag to drain")

    # An application session that is open at the fence gets ended; new ones are read-only.
    # One that connected during the fence (still on the old server when the Service moves)
    # is ended right after the repoint, so that it reconnects to the new server.
    app = src.connect("shop")
    late: list[psycopg.Connection[tuple[object, ...]]] = []
    result = logical.switchover(src.ci(), tgt.ci(), names, lambda: late.append(src.connect("shop")),
                                max_write_downtime=10)
    assert len(late) == 1
    # The contract (max_write_downtime); the figures themselves are in bench/switchover_bench.py.
    assert 0 < result.fence_seconds <= 10
    with pytest.raises(psycopg.OperationalError):
        app.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        late[0].execute("SELECT 1")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.execute("INSERT INTO sales.orders (customer_id, placed) VALUES (1, '2026-03-03')", "shop")

    # Both sides hold the same data, sequences included; replication objects are gone.
    diff = verify(src.ci(), tgt.ci())
    assert diff.clean, diff.summary(20)
    assert src.scalar("SELECT count(*) FROM pg_replication_slots") == 0
    for db in DBS:
        assert src.scalar("SELECT count(*) FROM pg_publication", db) == 0
        assert tgt.scalar("SELECT count(*) FROM pg_subscription", db) == 0
    # The target takes writes, and new ids continue after the source's.
    new_id = tgt.scalar("INSERT INTO sales.orders (customer_id, placed) VALUES (1, '2026-03-03') "
                        "RETURNING id", "shop")
    assert int(str(new_id)) > int(str(src.scalar("SELECT max(id) FROM sales.orders", "shop")))
    assert tgt.scalar("SELECT count(*) > 0 FROM sales.daily", "shop") is True


def test_failure_before_fence_leaves_source_exactly_as_it_was(pg_factory: StartServer,
                                                               tmp_path: Path) -> None:
    src, tgt = pg_factory(15), pg_factory(17)
    realistic.load(src, logical_ready=True, extensions=False)
    before = fingerprint(src)
    _schema_copy(src, tgt, tmp_path)
    # Replication runs for two databases; the third cannot start (its target database is gone).
    names = [Names(db) for db in DBS]
    logical.start(src.ci(), tgt.ci(), names[0])
    logical.start(src.ci(), tgt.ci(), names[1])
    tgt.execute(f'DROP DATABASE "{names[2].dbname}"')
    with pytest.raises(psycopg.OperationalError):
        logical.start(src.ci(), tgt.ci(), names[2])
    assert fingerprint(src) != before  # publications and slots exist now
    # Abort path: clean up everything (twice: it must be idempotent).
    for _ in range(2):
        for n in names:
            logical.cleanup(src.ci(), tgt.ci(), n)
    assert fingerprint(src) == before


def test_catch_up_timeout_unfences(pg_factory: StartServer, tmp_path: Path) -> None:
    src, tgt = pg_factory(16), pg_factory(18)
    realistic.load(src, logical_ready=True, extensions=False)
    _schema_copy(src, tgt, tmp_path)
    names = _start_all(src, tgt)
    before = fingerprint(src)
    # The target stops applying: the fence LSN can never be confirmed.
    shop = next(n for n in names if n.dbname == "shop")
    tgt.execute(f"ALTER SUBSCRIPTION {shop.subscription} DISABLE", "shop")
    src.execute("INSERT INTO public.notes (body) VALUES ('late')")
    before = fingerprint(src)
    with pytest.raises(logical.SwitchoverAborted):
        logical.switchover(src.ci(), tgt.ci(), names, lambda: pytest.fail("repointed"),
                           max_write_downtime=1.5)
    assert fingerprint(src) == before
    src.execute("INSERT INTO sales.orders (customer_id, placed) VALUES (1, '2026-03-03')", "shop")
    for n in names:
        logical.cleanup(src.ci(), tgt.ci(), n)
    assert src.scalar("SELECT count(*) FROM pg_replication_slots") == 0


def test_fence_restores_a_previous_setting(pg_factory: StartServer) -> None:
    src = pg_factory(15)
    src.execute("ALTER SYSTEM SET default_transaction_read_only = off")
    src.execute("SELECT pg_reload_conf()")
    before = fingerprint(src)
    state = logical.fence(src.ci(), grace=0.1)
    assert state.previous == "off"
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        src.execute("CREATE TABLE t (x int)")
    logical.unfence(src.ci(), state)
    assert fingerprint(src) == before


def test_a_write_that_overrides_the_fence_is_caught_up_before_the_repoint(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """The fence makes read-only the default; a client can override it (a superuser's tool, or
    SET default_transaction_read_only = off). Such a write after the fence moves the source's
    next transaction id: the catch-up notices, ends the sessions again and waits for the new
    position, so the row is on the target before the repoint."""
    from dbmigrate.engines.postgres.db import connect

    # No autovacuum: an autoanalyze is a write too, and would force a second recheck.
    src, tgt = pg_factory(15, {"autovacuum": "off"}), pg_factory(18)
    realistic.load(src, logical_ready=True, extensions=False)
    _schema_copy(src, tgt, tmp_path)
    names = _start_all(src, tgt)
    with connect(src.ci()) as s0, connect(tgt.ci()) as t0:
        srcs, tgts = {"postgres": s0}, {"postgres": t0}
        only = [n for n in names if n.dbname == "postgres"]
        keep = frozenset({s0.info.backend_pid})
        state = logical.fence(src.ci(), grace=0.1, keep_pids=keep)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            src.execute("INSERT INTO public.notes (body) VALUES ('polite')")
        with psycopg.connect(src.dsn(), autocommit=True, options="-c default_transaction_read_only=off") as rogue:
            rogue.execute("INSERT INTO public.notes (body) VALUES ('rogue')")
        _, rechecks = logical._catch_up(srcs, tgts, only, state, keep, deadline=time.monotonic() + 20)
    assert rechecks == 1
    # Everything the source committed, the rogue row included, is on the target now.
    assert tgt.scalar("SELECT count(*) FROM public.notes WHERE body = 'rogue'") == 1
    logical.unfence(src.ci(), state)
    for n in names:
        logical.cleanup(src.ci(), tgt.ci(), n)


def test_the_initial_copy_reports_its_progress(pg_factory: StartServer, tmp_path: Path) -> None:
    """What the operator shows as status.progress while an online execute's subscriptions copy
    the tables: tables done of all, and the bytes now in the target's databases."""
    from dbmigrate.engines.postgres import online

    src, tgt = pg_factory(17), pg_factory(18)
    realistic.load(src, logical_ready=True)
    _schema_copy(src, tgt, tmp_path)
    before = online.measure(src.ci(), tgt.ci(), "p1")
    assert (before.subscribed, before.tables_total, before.initial_sync_done) == (0, 0, False)

    online.start(src.ci(), tgt.ci(), "p1")
    state = online.measure(src.ci(), tgt.ci(), "p1")
    deadline = time.monotonic() + 60
    while not state.initial_sync_done and time.monotonic() < deadline:
        assert state.tables_synced <= state.tables_total
        time.sleep(0.5)
        state = online.measure(src.ci(), tgt.ci(), "p1")
    assert state.initial_sync_done, state
    published = sum(int(str(src.scalar("SELECT count(*) FROM pg_publication_tables", db))) for db in
                    online.databases(src.ci()))
    assert state.tables_synced == state.tables_total == published > 0
    target_bytes = sum(int(str(tgt.scalar("SELECT pg_database_size(current_database())", db)))
                       for db in online.databases(src.ci()))
    assert 0 < state.bytes_copied <= target_bytes
    online.cleanup(src.ci(), tgt.ci(), "p1")
