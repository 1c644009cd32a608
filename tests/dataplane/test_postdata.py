"""Early index builds (postdata.py) on real servers: a table's keys are built from the dump while
the copy goes on, and the final restore gets exactly the entries that were not."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from dbmigrate.engines.postgres import commands
from dbmigrate.engines.postgres.postdata import EarlyIndexes, table_keys
from dbmigrate.engines.postgres.postdata_plan import Key, ObjectId, per_table, without
from dbmigrate.engines.postgres.runner import run
from dbmigrate.engines.postgres.stream import Snapshot
from pgtools import PgServer, StartServer

SCHEMA = """
CREATE TABLE big (id int PRIMARY KEY, code text UNIQUE, v text);
CREATE INDEX big_v ON big (v);
CREATE TABLE child (id int PRIMARY KEY, big_id int REFERENCES big);
"""
ROWS = """
INSERT INTO big SELECT g, 'c' || g, md5(g::text) FROM generate_series(1, 20000) g;
INSERT INTO child SELECT g, g FROM generate_series(1, 100) g;
"""
INDEXES = "SELECT indexrelid::regclass::text FROM pg_index ORDER BY 1"
USER_INDEXES = {"big_pkey", "big_code_key", "big_v", "child_pkey"}


def _prepared(src: PgServer, tgt: PgServer, work: Path, schema: str = SCHEMA, rows: str = ROWS
              ) -> tuple[EarlyIndexes, str, dict[Key, set[ObjectId]]]:
    """``shop`` on the source; on the target its tables with rows but without any index, as
    the row copy leaves them. Returns the early worker, the dump's list and every table's keys."""
    src.execute("CREATE DATABASE shop")
    src.execute(schema + rows, "shop")
    dumpdir, script = work / "dump", work / "pre-data.sql"
    run(commands.dump_db(tgt.bindir, src.ci(), "shop", dumpdir, 1, schema_only=True))
    run(commands.restore_pre_data_script(tgt.bindir, dumpdir, script))
    run(commands.psql_script(tgt.bindir, tgt.ci(), script, "postgres"))
    tgt.execute(rows, "shop")
    toc = work / "toc.list"
    run(commands.toc_list(tgt.bindir, dumpdir, toc))
    with Snapshot(src.ci(), "shop") as snap:
        tables = [(str(r[0]), str(r[1])) for r in src.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public'", "shop")]
        keys = table_keys(src.ci(), "shop", snap.id, tables)
    entries = toc.read_text()
    return (EarlyIndexes(tgt.bindir, tgt.ci(), "shop", dumpdir, per_table(entries, keys)),
            entries, keys)


def _restore_the_rest(tgt: PgServer, early: EarlyIndexes, entries: str,
                      keys: dict[Key, set[ObjectId]], work: Path) -> None:
    """The final restore as copy.py runs it; --exit-on-error: an entry restored twice fails it."""
    rest = work / "rest.list"
    rest.write_text(without(entries, {o for k in early.done for o in keys[k]}))
    run(commands.restore_data(tgt.bindir, tgt.ci(), work / "dump", "shop", 2, listfile=rest))


def _wait(what: str, cond: Callable[[], object]) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _user_indexes(tgt: PgServer) -> list[str]:
    return [str(r[0]) for r in tgt.execute(INDEXES, "shop") if r[0] in USER_INDEXES]


def test_only_the_tables_asked_for_have_their_keys_read(pg_factory: StartServer, tmp_path: Path) -> None:
    src = pg_factory(15)
    src.execute("CREATE DATABASE shop")
    src.execute(SCHEMA, "shop")
    with Snapshot(src.ci(), "shop") as snap:
        keys = table_keys(src.ci(), "shop", snap.id, [("public", "big")])
        none = table_keys(src.ci(), "shop", snap.id, [])
    assert set(keys) == {("public", "big")}
    assert len(keys[("public", "big")]) == 3  # primary key, unique constraint, plain index
    assert none == {}


def test_a_queued_table_gets_its_keys_while_the_copy_goes_on(
        pg_factory: StartServer, tmp_path: Path) -> None:
    src, tgt = pg_factory(15), pg_factory(18)
    early, entries, keys = _prepared(src, tgt, tmp_path)
    assert set(early.lists) == {("public", "big"), ("public", "child")}
    early.add(("public", "big"))
    _wait("the early build", lambda: ("public", "big") in early.done)
    # Built before finish(): the primary key, the unique constraint and the plain index of
    # big, nothing of child (not queued), and no foreign key (that waits for every table).
    assert _user_indexes(tgt) == ["big_code_key", "big_pkey", "big_v"]
    assert tgt.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "shop") == 0
    assert early.finish() is None
    assert early.done == {("public", "big")}
    _restore_the_rest(tgt, early, entries, keys, tmp_path)
    assert _user_indexes(tgt) == ["big_code_key", "big_pkey", "big_v", "child_pkey"]
    assert tgt.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "shop") == 1


def test_tables_queued_when_the_rows_end_are_built_once_whoever_takes_them(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """The copy calls finish() right after the last table's rows: the worker may have taken
    none, one or both queued tables by then. Whatever it took is in ``done`` and out of the
    final list; whatever it left is built by the final restore; nothing is built twice."""
    src, tgt = pg_factory(15), pg_factory(18)
    early, entries, keys = _prepared(src, tgt, tmp_path)
    early.add(("public", "big"))
    early.add(("public", "child"))
    assert early.finish() is None
    assert early.done <= {("public", "big"), ("public", "child")}
    _restore_the_rest(tgt, early, entries, keys, tmp_path)
    assert _user_indexes(tgt) == ["big_code_key", "big_pkey", "big_v", "child_pkey"]
    assert tgt.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "shop") == 1


def test_an_index_the_target_cannot_build_stops_the_worker_with_the_servers_reason(
        pg_factory: StartServer, tmp_path: Path) -> None:
    """A classic restore failure, made for real: an expression index whose function reads a
    table without a schema works on the source, but a restore runs with an empty search_path.
    The worker stops at it and finish() hands PostgreSQL's message to the copy."""
    src, tgt = pg_factory(15), pg_factory(18)
    early, _, _ = _prepared(src, tgt, tmp_path, """
CREATE TABLE lookup (id int PRIMARY KEY, v int);
CREATE FUNCTION looked_up(int) RETURNS int LANGUAGE sql IMMUTABLE
    AS 'SELECT v FROM lookup WHERE id = $1';
CREATE TABLE t (id int);
CREATE INDEX t_looked_up ON t (looked_up(id));
""", """
INSERT INTO lookup SELECT g, g FROM generate_series(1, 10) g;
INSERT INTO t SELECT g % 10 + 1 FROM generate_series(1, 1000) g;
""")
    early.add(("public", "t"))
    _wait("the early build to fail", lambda: early.error is not None)
    early.add(("public", "lookup"))   # taken by nobody: the worker has stopped
    error = early.finish()
    assert error is not None and 'relation "lookup" does not exist' in str(error)
    assert early.done == set()
