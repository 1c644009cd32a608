"""The schema created biggest tables first, while rows are already copying (schema_load.py),
on real servers: a database of many tables mixed with objects that depend on one another."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from dbmigrate.engines.postgres import copy as copy_module
from dbmigrate.engines.postgres import schema_load, stream
from dbmigrate.engines.postgres.copy import CopyOptions, snapshot_copy
from dbmigrate.engines.postgres.verify import VerifyOptions, verify
from pgtools import PgServer, StartServer, schema_dump

# 40 independent tables (the last one big, with a comment and a column comment) mixed with
# what must keep its order: a type and a function used by tables, an inheritance parent and
# child, a table of another table's row type, a partitioned table, serial and identity
# columns (sequences, OWNED BY, defaults), a view, a tablespace-free SET between entries.
SCHEMA = """
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('ok', 'sad');
CREATE FUNCTION app.positive(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0';
""" + "".join(
    f"CREATE TABLE app.t{i:02d} (id serial PRIMARY KEY, m app.mood DEFAULT 'ok', "
    f"n int CHECK (app.positive(n)), v text);"
    f"INSERT INTO app.t{i:02d} (n, v) SELECT g, 'row ' || g FROM generate_series(1, {5 + i}) g;"
    for i in range(40)) + """
INSERT INTO app.t39 (n, v) SELECT g, repeat('big ', 50) FROM generate_series(1, 20000) g;
COMMENT ON TABLE app.t39 IS 'the big one';
COMMENT ON COLUMN app.t39.v IS 'payload';
CREATE TABLE app.t10_parent (id int, note text);
CREATE TABLE app.t10_zchild (extra int) INHERITS (app.t10_parent);
INSERT INTO app.t10_zchild VALUES (1, 'child row', 2);
CREATE TABLE app.t30_rows (id int GENERATED ALWAYS AS IDENTITY, r app.t03);
INSERT INTO app.t30_rows (r) SELECT t FROM app.t03 t;
CREATE TABLE app.t20_events (at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE app.t20_events_2026 PARTITION OF app.t20_events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO app.t20_events VALUES ('2026-03-01', 1);
CREATE VIEW app.t15_view AS SELECT count(*) AS n FROM app.t15;
"""


def _source(pg_factory: StartServer) -> PgServer:
    src = pg_factory(15)
    src.execute("CREATE DATABASE many")
    src.execute(SCHEMA, "many")
    src.execute("ANALYZE", "many")
    return src


def _pre_data(server: PgServer, dbname: str, bindir: Path) -> str:
    return subprocess.run(
        [str(bindir / "pg_dump"), "--schema-only", "--section=pre-data", "--no-sync"],
        env={**server.ci().db(dbname).env(), "PATH": "/usr/bin:/bin"}, check=True,
        capture_output=True, text=True).stdout


def _statements(script: str) -> list[str]:
    return [ln for ln in script.splitlines()
            if ln.strip() and not ln.startswith(("--", "\\", "SET ", "SELECT pg_catalog.set_config"))]


def _check(src: PgServer, tgt: PgServer) -> None:
    diff = verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=None))
    assert diff.clean, diff.summary(20)
    assert schema_dump(src, "many", tgt.bindir) == schema_dump(tgt, "many", tgt.bindir)
    assert tgt.scalar("SELECT obj_description('app.t39'::regclass)", "many") == "the big one"
    parent = "SELECT count(*) FROM app.t10_parent"  # the child's rows, through inheritance
    assert tgt.scalar(parent, "many") == src.scalar(parent, "many") > 0
    assert tgt.scalar("SELECT (r).v FROM app.t30_rows ORDER BY id LIMIT 1", "many") == "row 1"


def test_independent_tables_are_created_biggest_first_and_released_as_committed(
        pg_factory: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src, tgt = _source(pg_factory), pg_factory(18)
    caplog.set_level(logging.INFO, logger="dbmigrate")
    snapshot_copy(src.ci(), tgt.ci(), CopyOptions(workdir=tmp_path / "w", bindir=tgt.bindir, jobs=2))
    _check(src, tgt)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("copied many"))
    # t00..t39 and the parent of the inheritance pair are independent; the rest kept its place.
    assert int(line.split(" reordered")[0].rsplit(" ", 1)[1]) >= 30, line

    # The same schema applied on its own: the big table's transaction commits first, and the
    # tables are handed over in several steps, not all at the end.
    with stream.Snapshot(src.ci(), "many") as snap:
        independent = stream.independent_tables(src.ci(), "many", snap.id)
        sizes = {(t.schema, t.name): t.bytes for t in stream.tables(src.ci(), "many", snap.id)}
    assert ("app", "t10_zchild") not in independent and ("app", "t30_rows") not in independent
    assert ("app", "t20_events_2026") not in independent and ("app", "t10_parent") in independent
    script = _pre_data(src, "many", tgt.bindir)
    tgt.execute("CREATE DATABASE again")
    released: list[set[tuple[str, str]]] = []
    stats = schema_load.apply(tgt.ci(), "again", script, independent=independent,
                              priority=sizes, on_created=released.append)
    assert stats.reordered_tables >= 30

    def commit_of(table: str) -> int:
        return next(i for i, r in enumerate(released) if ("app", table) in r)

    # t39, the biggest, is the last of its run (t31..t39) in script order, yet it is created
    # in the run's first, small, transaction: in script order it would come after t31's.
    assert commit_of("t39") <= commit_of("t31"), released
    assert len([r for r in released if r]) >= 3, "tables are handed over as they are committed"
    assert _statements(_pre_data(tgt, "again", tgt.bindir)) == _statements(script)


def test_a_missed_dependency_falls_back_to_the_plain_order(
        pg_factory: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The dependency analysis is made wrong on purpose (a mock of a fault we cannot cause for
    real: the catalog query has no known miss): the inheritance child is declared independent
    and, being bigger than its parent, created first. The copy redoes the database with its
    schema in plain order and is exact."""
    src, tgt = _source(pg_factory), pg_factory(18)
    src.execute("INSERT INTO app.t10_zchild SELECT g, 'more', g FROM generate_series(1, 5000) g", "many")
    real = stream.independent_tables

    def wrong(source: object, dbname: str, snapshot: str) -> set[tuple[str, str]]:
        found = real(source, dbname, snapshot)  # type: ignore[arg-type]
        return found | {("app", "t10_zchild")} if dbname == "many" else found

    monkeypatch.setattr(copy_module, "independent_tables", wrong)
    caplog.set_level(logging.INFO, logger="dbmigrate")
    snapshot_copy(src.ci(), tgt.ci(), CopyOptions(workdir=tmp_path / "w", bindir=tgt.bindir, jobs=2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("t10_zchild" in w and "plain order" in w for w in warnings), warnings
    _check(src, tgt)
