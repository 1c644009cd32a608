"""Snapshot copy and verification on real servers: progress, safe re-run, corruption detection."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import psycopg
import pytest

import realistic
from dbmigrate.engines.base import Progress, Severity
from dbmigrate.engines.postgres.budget import TooFewConnections, per_lane
from dbmigrate.engines.postgres.checks import TargetInfo, check
from dbmigrate.engines.postgres.copy import CopyOptions, snapshot_copy
from dbmigrate.engines.postgres.inventory import connection_slots
from dbmigrate.engines.postgres.verify import VerifyOptions, verify
from pgtools import PgServer, StartServer

_CLIENTS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"


def _opts(tmp_path: Path, target: PgServer) -> CopyOptions:
    return CopyOptions(workdir=tmp_path / "work", bindir=target.bindir, jobs=2)


@pytest.mark.parametrize("data", ["stream", "dump"])
def test_copy_reports_progress_and_verifies(pg_factory: StartServer, tmp_path: Path, data: str) -> None:
    src, tgt = pg_factory(15), pg_factory(18)
    realistic.load(src)
    seen: list[Progress] = []
    snapshot_copy(src.ci(), tgt.ci(), dataclasses.replace(_opts(tmp_path, tgt), data=data),
                  lambda p: seen.append(Progress(**vars(p))))
    last = seen[-1]
    assert last.tables_total >= 8 and last.tables_copied == last.tables_total
    assert last.bytes_copied == last.bytes_total > 0
    assert last.databases_copied == last.databases_total == 3
    copied = [p.bytes_copied for p in seen]
    assert copied == sorted(copied), "progress never goes backwards"
    assert any(0 < p.percent < 100 for p in seen), "intermediate progress was reported"
    diff = verify(src.ci(), tgt.ci())
    assert diff.clean, diff.summary(20)
    # The bookkeeping database is gone; the copy's roles can log in with their own password.
    assert tgt.scalar("SELECT count(*) FROM pg_database WHERE datname = '_dbmigrate'") == 0
    with psycopg.connect(tgt.dsn("analytics ü", user="alice", password="alice-pw")) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)


def test_verification_reports_corrupt_row_and_sequence(pg_factory: StartServer, tmp_path: Path) -> None:
    src, tgt = pg_factory(15), pg_factory(17)
    realistic.load(src, extensions=False)
    snapshot_copy(src.ci(), tgt.ci(), _opts(tmp_path, tgt))
    assert verify(src.ci(), tgt.ci()).clean
    tgt.execute("UPDATE sales.customers SET name = 'tampered' WHERE id = 7;"
                "SELECT setval('sales.invoice_no', 5);"
                "DELETE FROM sales.events WHERE id = 3;"
                "DROP VIEW sales.order_totals", "shop")
    diff = verify(src.ci(), tgt.ci())
    assert diff.checksums == ["shop.sales.customers: content differs (all rows compared)"]
    assert len(diff.sequences) == 1 and diff.sequences[0].startswith("shop.sales.invoice_no:")
    n = src.scalar("SELECT count(*) FROM ONLY sales.events_2025", "shop")
    assert diff.rows == [f"shop.sales.events_2025: {n} rows on source, {int(str(n)) - 1} on target"]
    assert "shop: views 1 on source, 0 on target" in diff.objects
    # Bounded checksums: the first rows by key only; a change beyond them goes unseen, one
    # within them is found.
    bounded = VerifyOptions(checksum_rows=100)
    tgt.execute("UPDATE sales.customers SET name = 'orig' WHERE id = 7", "shop")
    src.execute("UPDATE sales.customers SET name = 'orig' WHERE id = 7", "shop")
    tgt.execute("UPDATE sales.customers SET name = 'far' WHERE id = 900", "shop")
    assert not any("customers" in c for c in verify(src.ci(), tgt.ci(), bounded).checksums)
    tgt.execute("UPDATE sales.customers SET name = 'near' WHERE id = 50", "shop")
    assert verify(src.ci(), tgt.ci(), bounded).checksums == [
        "shop.sales.customers: content differs (first 100 rows compared)"]


class Interrupted(Exception):
    pass


def test_rerun_after_interruption_redoes_half_restored_database(pg_factory: StartServer,
                                                                 tmp_path: Path) -> None:
    src, tgt = pg_factory(15), pg_factory(18)
    realistic.load(src, rows=3000)

    shop_tables = 0

    def die_mid_shop(p: Progress) -> None:
        # Like an operator pod dying: stop once 'shop' has some tables loaded, not all.
        nonlocal shop_tables
        if p.current in ("restoring shop", "copying shop"):
            shop_tables += 1
            if shop_tables == 3:
                raise Interrupted

    with pytest.raises(Interrupted):
        snapshot_copy(src.ci(), tgt.ci(), _opts(tmp_path, tgt), die_mid_shop)
    assert tgt.scalar("SELECT count(*) FROM pg_database WHERE datname = 'shop'") == 1
    assert not verify(src.ci(), tgt.ci()).clean
    # Stray data in the half-restored database must not survive: it is dropped, not merged.
    tgt.execute("CREATE TABLE public.leftover (x int)", "shop")
    result = snapshot_copy(src.ci(), tgt.ci(), _opts(tmp_path, tgt))
    assert result.databases["shop"] > 0, "shop was copied again"
    diff = verify(src.ci(), tgt.ci())
    assert diff.clean, diff.summary(20)
    assert tgt.scalar("SELECT to_regclass('public.leftover') IS NULL", "shop") is True


def test_a_resumed_copy_still_reports_what_the_interrupted_run_found(pg_factory: StartServer,
                                                                    tmp_path: Path) -> None:
    """Each database is verified right after its copy, against the snapshot it was copied from;
    a resumed copy does not copy (or verify) finished databases again, so their verification
    is kept with them. A real difference cannot be made to appear between a database's copy
    and its verification, so the test writes one into the kept state between the two runs."""
    src, tgt = pg_factory(15), pg_factory(18)
    realistic.load(src, rows=3000)
    opts = dataclasses.replace(_opts(tmp_path, tgt), verify=VerifyOptions())

    def die_in_shop(p: Progress) -> None:
        if p.current == "copying shop":
            raise Interrupted

    with pytest.raises(Interrupted):
        snapshot_copy(src.ci(), tgt.ci(), opts, die_in_shop)
    kept = dict(tgt.execute("SELECT item, diff FROM copy_state", "_dbmigrate"))
    assert kept["db:analytics ü"] == {"rows": [], "checksums": [], "sequences": [], "objects": []}
    tgt.execute("UPDATE copy_state SET diff = jsonb_set(diff, '{rows}', "
                "'[\"analytics ü.public.log: 9 rows on source, 8 on target\"]') "
                "WHERE item = 'db:analytics ü'", "_dbmigrate")

    result = snapshot_copy(src.ci(), tgt.ci(), opts)
    assert result.databases["analytics ü"] == 0.0 and result.databases["shop"] > 0
    assert result.diff.rows == ["analytics ü.public.log: 9 rows on source, 8 on target"]
    assert not result.diff.checksums and not result.diff.sequences and not result.diff.objects


def test_roles_copy_is_repeatable_and_keeps_the_targets_admin(pg_factory: StartServer,
                                                               tmp_path: Path) -> None:
    from dbmigrate.engines.postgres.copy import _prepare_state, copy_roles, finish
    src, tgt = pg_factory(15), pg_factory(16)
    src.execute("CREATE ROLE \"Weird \"\"Name\" LOGIN PASSWORD 'pw1'; CREATE ROLE plain NOLOGIN;"
                "GRANT plain TO \"Weird \"\"Name\"; CREATE ROLE admin2 SUPERUSER LOGIN PASSWORD 'a2';"
                "ALTER ROLE postgres PASSWORD 'source-admin-pw'")
    source = dataclasses.replace(src.ci(), user="admin2", password="a2")
    _prepare_state(tgt.ci())
    for _ in range(2):  # the second run meets every role already there
        copy_roles(source, tgt.ci(), _opts(tmp_path, tgt))
    finish(tgt.ci())
    assert tgt.scalar("SELECT pg_has_role('Weird \"Name', 'plain', 'MEMBER')") is True
    with psycopg.connect(tgt.dsn(user='Weird "Name', password="pw1")):
        pass
    # The target's administrator keeps its own password: the copy logs in with it.
    with psycopg.connect(tgt.dsn()):
        pass


def test_split_tables_and_piped_pieces_copy_every_row(pg_factory: StartServer, tmp_path: Path) -> None:
    # Tiny thresholds, so that the realistic tables are split into block ranges and pieces go
    # both through psql pipes and through the process: the copy must still be exact.
    src, tgt = pg_factory(15), pg_factory(18)
    realistic.load(src, rows=4000)
    src.execute("UPDATE sales.orders SET total = total + 1 WHERE id % 3 = 0", "shop")  # holes, HOT
    opts = dataclasses.replace(_opts(tmp_path, tgt), jobs=3, chunk_bytes=64 * 1024,
                               pipe_bytes=96 * 1024)
    snapshot_copy(src.ci(), tgt.ci(), opts)
    diff = verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=None))
    assert diff.clean, diff.summary(20)


def test_copy_of_a_live_source_verifies_against_its_snapshot(pg_factory: StartServer, tmp_path: Path) -> None:
    """A test copy is taken while applications write: verification compares the target with
    the snapshot the copy was made from, so it is exact (comparing with the live source would
    report every row written since)."""
    import threading

    src, tgt = pg_factory(15), pg_factory(18)
    src.execute("CREATE TABLE ticks (id bigserial PRIMARY KEY, payload text)")
    src.execute("INSERT INTO ticks (payload) SELECT repeat('x', 200) FROM generate_series(1, 20000)")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with psycopg.connect(src.dsn(), autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO ticks (payload) VALUES ('live')")
                written[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        result = snapshot_copy(src.ci(), tgt.ci(), dataclasses.replace(
            _opts(tmp_path, tgt), verify=VerifyOptions()))
    finally:
        stop.set()
        t.join()
    assert written[0] > 0, "the source took writes during the copy"
    assert result.diff.clean, result.diff.summary(20)
    # The naive comparison with the live source would have failed: it really moved on.
    live = verify(src.ci(), tgt.ci())
    assert any("ticks" in r for r in live.rows), live.summary(5)


def test_tables_with_odd_names_are_copied_once_and_their_neighbours_keep_their_data(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """The schema dump leaves out the rows the copy streams with one pattern per schema (an
    alternation of quoted names): names full of pattern and regex characters must match
    exactly themselves, and the schema's sequences and materialized views keep their data."""
    src, tgt = pg_factory(15), pg_factory(18)
    names = ["MixedCase", 'with "quote"', "dot.name", "pipe|name", "paren(s)", "dollar$", "star*",
             "q?", "br[ack]et", "a b", "t", "T"]
    src.execute("CREATE DATABASE odd")
    src.execute('CREATE SCHEMA "Odd.Schema|x"', "odd")
    for i, n in enumerate(names):
        q = '"Odd.Schema|x"."' + n.replace('"', '""') + '"'
        src.execute(f"CREATE TABLE {q} (id int PRIMARY KEY, v text);"
                    f"INSERT INTO {q} SELECT g, {i} || '-' || g FROM generate_series(1, {10 + i}) g", "odd")
    src.execute('CREATE SEQUENCE "Odd.Schema|x"."star*_seq"; SELECT setval(\'"Odd.Schema|x"."star*_seq"\', 42);'
                'CREATE MATERIALIZED VIEW "Odd.Schema|x".mv AS SELECT count(*) AS n FROM "Odd.Schema|x"."t"',
                "odd")
    snapshot_copy(src.ci(), tgt.ci(), _opts(tmp_path, tgt))
    diff = verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=None))
    assert diff.clean, diff.summary(20)
    assert tgt.scalar('SELECT last_value FROM "Odd.Schema|x"."star*_seq"', "odd") == 42
    assert tgt.scalar('SELECT n FROM "Odd.Schema|x".mv', "odd") == 10 + names.index("t")
    for i, n in enumerate(names):
        q = '"Odd.Schema|x"."' + n.replace('"', '""') + '"'
        assert tgt.scalar(f"SELECT count(*) FROM {q}", "odd") == 10 + i, n


def test_a_target_without_wal_gets_big_tables_whole(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """On a wal_level=minimal target (the test-mode server) a table loaded whole, in the
    transaction that truncates it, is written without WAL, so it is not split; a target that
    writes WAL anyway gets it split. Whether its primary key is built early depends on whether
    the worker takes it before the rows end (test_postdata.py covers both); it is built once."""
    src = pg_factory(15)
    src.execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
    src.execute("INSERT INTO big SELECT g, repeat(md5(g::text), 5) FROM generate_series(1, 300000) g")
    size = int(str(src.scalar("SELECT pg_table_size('big')")))
    assert size > 48 * 2**20
    wal: dict[str, int] = {}
    for level, extra in (("minimal", {"max_wal_senders": "0", "max_replication_slots": "0"}),
                         ("logical", {})):
        tgt = pg_factory(18, {"wal_level": level, **extra})
        start = tgt.scalar("SELECT pg_current_wal_lsn()")
        result = snapshot_copy(src.ci(), tgt.ci(), dataclasses.replace(
            _opts(tmp_path / level, tgt), verify=VerifyOptions(checksum_rows=None)))
        assert result.diff.clean, result.diff.summary(20)
        wal[level] = int(str(tgt.scalar(f"SELECT pg_current_wal_lsn() - '{start}'")))
        assert tgt.scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'big_pkey'") == 1
    # Only the new databases' catalogs are WAL-logged (CREATE DATABASE copies its template).
    assert wal["minimal"] < size / 2 < size < wal["logical"], (wal, size)


def test_an_index_the_target_cannot_build_fails_the_copy_with_the_servers_reason(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """A classic restore failure, made for real: an expression index whose function reads a
    table without a schema works on the source, but a restore runs with an empty search_path.
    When the early index build hits it, the copy stops with PostgreSQL's own message."""
    src, tgt = pg_factory(15), pg_factory(18)
    src.execute("""
CREATE TABLE lookup (id int PRIMARY KEY, v int);
INSERT INTO lookup SELECT g, g FROM generate_series(1, 10) g;
CREATE FUNCTION looked_up(int) RETURNS int LANGUAGE sql IMMUTABLE
    AS 'SELECT v FROM lookup WHERE id = $1';
CREATE TABLE t (id int);
INSERT INTO t SELECT g % 10 + 1 FROM generate_series(1, 1000) g;
CREATE INDEX t_looked_up ON t (looked_up(id));""")
    opts = dataclasses.replace(_opts(tmp_path, tgt), early_index_bytes=0)
    with pytest.raises(Exception, match='relation "lookup" does not exist'):
        snapshot_copy(src.ci(), tgt.ci(), opts)


def test_the_copy_fits_in_the_sources_free_connections_and_leaves_half_to_the_applications(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """A server with max_connections 10 (3 reserved): unlimited, the copy's 2 databases side
    by side with 4 workers each would want about 20 sessions. It must take at most half of
    the free ones, verify clean, and leave room for an application to log in throughout."""
    src, tgt = pg_factory(15, {"max_connections": "10"}), pg_factory(18)
    realistic.load(src)
    baseline = int(str(src.scalar(_CLIENTS)))
    peak = [0]
    app_refused: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:  # an application logging in, as it would while the copy runs
                with psycopg.connect(src.dsn()) as conn:
                    row = conn.execute(_CLIENTS).fetchone()
                    assert row is not None
                    peak[0] = max(peak[0], int(row[0]) - 1)  # not counting itself
            except psycopg.OperationalError as e:
                app_refused.append(str(e))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = snapshot_copy(src.ci(), tgt.ci(), dataclasses.replace(
            _opts(tmp_path, tgt), jobs=4, lanes=2, verify=VerifyOptions()))
    finally:
        stop.set()
        watcher.join()
    assert result.diff.clean, result.diff.summary(20)
    # 10 - 3 reserved - 1 (the budget's own query) = 6 free: half is 3, the minimum 4.
    assert (result.lanes, result.jobs) == (1, 1)
    assert not app_refused
    assert peak[0] - baseline <= per_lane(1), f"the copy held {peak[0] - baseline} sessions"


def test_a_source_without_room_refuses_the_copy_before_the_target_is_touched(
        pg_factory: StartServer, tmp_path: Path) -> None:
    src, tgt = pg_factory(15, {"max_connections": "10"}), pg_factory(18)
    src.execute("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
    held = [psycopg.connect(src.dsn()) for _ in range(4)]
    try:
        with pytest.raises(TooFewConnections, match=r"accepts \d more connections .*max_connections 10"):
            snapshot_copy(src.ci(), tgt.ci(), _opts(tmp_path, tgt))
        [finding] = [f for f in check(src.ci(), TargetInfo(major=18)) if f.code == "FEW_CONNECTIONS"]
        assert finding.severity is Severity.WARNING and "would be refused now" in finding.message
        # A login without pg_read_all_stats sees no backend_type in others' sessions: they
        # still count (else the copy would see an empty server).
        app = dataclasses.replace(src.ci(), user="app", password="app-pw")
        assert connection_slots(app).in_use >= len(held) + 1
    finally:
        for c in held:
            c.close()
    assert tgt.scalar("SELECT count(*) FROM pg_database WHERE datname = '_dbmigrate'") == 0
    # With the sessions gone there is room for one worker, and the check says how slow.
    [finding] = [f for f in check(src.ci(), TargetInfo(major=18)) if f.code == "FEW_CONNECTIONS"]
    assert finding.severity is Severity.INFO
    assert "1 database(s) at a time with 1 row stream(s) each instead of 2 with 2" in finding.message
