"""Pre-flight checks: each check is proven by creating the offending object on a real 15 server
and looking for the finding against real 16 (no ICU, few extensions), 17 and 18 targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbmigrate.engines.base import Finding, Severity
from dbmigrate.engines.postgres.checks import TargetInfo, check
from pgtools import PgServer, start_server

OFFENDERS = r"""
CREATE EXTENSION hstore;
CREATE EXTENSION pg_walinspect;
CREATE EXTENSION adminpack;
CREATE TABLE reg_holder (id int PRIMARY KEY, rel regclass, fn regprocedure);
CREATE TABLE no_key (v int);
CREATE TABLE full_identity (v int);
ALTER TABLE full_identity REPLICA IDENTITY FULL;
CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
SELECT lo_from_bytea(0, 'blob');
CREATE COLLATION german (provider = icu, locale = 'de-DE');
CREATE TABLE names (id int PRIMARY KEY, name text COLLATE german);
CREATE FUNCTION norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT lower(t)';
CREATE TABLE people (id int PRIMARY KEY, email text);
CREATE INDEX people_norm ON people (norm(email));
CREATE VIEW bgw AS SELECT buffers_backend, buffers_alloc FROM pg_stat_bgwriter;
CREATE VIEW walstats AS SELECT wal_write, wal_records FROM pg_stat_wal;
CREATE UNLOGGED TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE animal (id int PRIMARY KEY);
CREATE TABLE dog () INHERITS (animal);
ALTER TABLE dog ADD PRIMARY KEY (id);
"""

SERVER_OFFENDERS = [
    "ALTER SYSTEM SET vacuum_defer_cleanup_age = 5",
    "ALTER SYSTEM SET trace_recovery_messages = debug1",
    "SELECT pg_reload_conf()",
    "CREATE ROLE manager CREATEROLE",
    "CREATE ROLE tuner",
    "ALTER ROLE tuner SET force_parallel_mode = on",
    "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'",
    "CREATE DATABASE app",
    "CREATE DATABASE icudb LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0",
    "CREATE DATABASE _dbmigrate",
]


@pytest.fixture(scope="module")
def source() -> Iterator[PgServer]:
    s = start_server(15)
    try:
        for stmt in SERVER_OFFENDERS:
            s.execute(stmt)
        s.execute(OFFENDERS, "app")
        s.execute("CREATE TABLE docs (id int PRIMARY KEY, body tsvector)", "icudb")
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[int, TargetInfo]]:
    servers = [start_server(m) for m in (16, 17, 18)]
    try:
        yield {s.major: TargetInfo.from_server(s.ci()) for s in servers}
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="module")
def findings(source: PgServer, targets: dict[int, TargetInfo]) -> dict[int, list[Finding]]:
    return {major: check(source.ci(), t) for major, t in targets.items()}


def codes(fs: list[Finding], obj_part: str = "") -> set[str]:
    return {f.code for f in fs if obj_part in f.object}


def find(fs: list[Finding], code: str) -> list[Finding]:
    return [f for f in fs if f.code == code]


def test_extension_missing_only_where_target_lacks_it(findings: dict[int, list[Finding]]) -> None:
    # pgserver's 16 ships no contrib: hstore is missing there, present on Debian's 17/18.
    assert "EXTENSION_MISSING" in codes(findings[16], "app.hstore")
    assert "EXTENSION_MISSING" not in codes(findings[18], "app.hstore")
    # adminpack was removed in 17: missing on 18, and the curated entry explains why.
    assert "EXTENSION_MISSING" in codes(findings[18], "app.adminpack")
    assert "PG17_ADMINPACK_REMOVED" in codes(findings[18])
    assert "PG17_ADMINPACK_REMOVED" not in codes(findings[16])
    assert all(f.severity is Severity.BLOCKER for f in find(findings[16], "EXTENSION_MISSING"))


def test_reg_type_columns(findings: dict[int, list[Finding]]) -> None:
    objs = {f.object for f in find(findings[18], "REG_TYPE_COLUMN")}
    assert objs == {"app: reg_holder.rel regclass", "app: reg_holder.fn regprocedure"}


def test_tables_blocking_logical(findings: dict[int, list[Finding]]) -> None:
    objs = {f.object for f in find(findings[18], "NO_REPLICA_IDENTITY")}
    assert "app.public.no_key" in objs
    assert "app.public.full_identity" not in objs  # REPLICA IDENTITY FULL is enough
    assert "app.public.people" not in objs
    assert all(f.applies_to == "logical" for f in find(findings[18], "NO_REPLICA_IDENTITY"))
    assert {f.object for f in find(findings[18], "UNLOGGED_TABLE")} == {"app.public.scratch"}
    assert {f.object for f in find(findings[18], "LARGE_OBJECTS")} == {"app"}


def test_icu(findings: dict[int, list[Finding]]) -> None:
    icu16 = {f.object for f in find(findings[16], "ICU_UNAVAILABLE")}
    assert "icudb" in icu16
    assert "app: collation german" in icu16
    assert "app: column names.name" in icu16
    assert not find(findings[18], "ICU_UNAVAILABLE")


def test_release_note_incompatibilities(findings: dict[int, list[Finding]]) -> None:
    f16, f17, f18 = findings[16], findings[17], findings[18]
    assert {f.object for f in find(f16, "PG16_REMOVED_SETTING")} == {"vacuum_defer_cleanup_age = 5"}
    assert any("force_parallel_mode" in f.object for f in find(f16, "PG16_REMOVED_SETTING_ROLE_DB"))
    assert {f.object for f in find(f16, "PG16_CREATEROLE_RESTRICTED")} == {"manager"}
    assert "PG16_WALINSPECT_FUNCTIONS" in codes(f16)
    # 17's entries apply to 17 and 18 targets, never to 16.
    for fs in (f17, f18):
        assert {f.object for f in find(fs, "PG17_REMOVED_SETTING")} == {"trace_recovery_messages = debug1"}
        assert {f.object for f in find(fs, "PG17_MAINTENANCE_SEARCH_PATH")} == {"app: norm(text)"}
        assert {f.object for f in find(fs, "PG17_BGWRITER_COLUMNS_MOVED")} == {"app: bgw uses buffers_backend"}
    assert not codes(f16) & {"PG17_REMOVED_SETTING", "PG17_MAINTENANCE_SEARCH_PATH", "PG17_BGWRITER_COLUMNS_MOVED"}
    # 18's entries.
    assert {f.object for f in find(f18, "PG18_WAL_STATS_COLUMNS_MOVED")} == {"app: walstats uses wal_write"}
    assert {f.object for f in find(f18, "PG18_MD5_PASSWORD_DEPRECATED")} == {"legacy"}
    assert {f.object for f in find(f18, "PG18_UNLOGGED_PARTITIONED")} == {"app: events"}
    assert {f.object for f in find(f18, "PG18_VACUUM_INHERITANCE")} == {"app: animal"}
    assert {f.object for f in find(f18, "PG18_FTS_COLLATION_PROVIDER")} == {"icudb: docs.body"}
    assert not codes(f17) & {"PG18_MD5_PASSWORD_DEPRECATED", "PG18_UNLOGGED_PARTITIONED"}
    # Every curated finding cites its release notes.
    assert all("release notes" in f.hint for f in f18 if f.code.startswith("PG1"))


def test_reserved_name_and_version_order(source: PgServer, findings: dict[int, list[Finding]]) -> None:
    assert {f.object for f in find(findings[18], "RESERVED_DATABASE_NAME")} == {"_dbmigrate"}
    same = check(source.ci(), TargetInfo.from_server(source.ci()))
    assert "VERSION_NOT_NEWER" in codes(same)


def test_clean_server_has_no_blockers() -> None:
    s = start_server(15)
    try:
        s.execute("CREATE DATABASE shop")
        s.execute("CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)",
                  "shop")
        t = start_server(18)
        try:
            fs = check(s.ci(), TargetInfo.from_server(t.ci()))
        finally:
            t.stop()
    finally:
        s.stop()
    assert [f for f in fs if f.severity is Severity.BLOCKER] == []


def test_replication_settings_insufficient() -> None:
    s = start_server(15, {"wal_level": "replica", "max_replication_slots": "1", "max_wal_senders": "1"})
    try:
        fs = check(s.ci(), TargetInfo(major=18))
    finally:
        s.stop()
    assert {"WAL_LEVEL", "MAX_REPLICATION_SLOTS", "MAX_WAL_SENDERS"} <= codes(fs)
    assert all(f.applies_to == "logical" for f in fs if f.code in {"WAL_LEVEL", "MAX_REPLICATION_SLOTS"})


def test_target_info_from_image_share_dir(targets: dict[int, TargetInfo]) -> None:
    # The operator can learn a target image's extensions from its files, without a server.
    from pgtools import CACHE
    share = Path(CACHE) / "pg" / "18" / "root" / "usr" / "share" / "postgresql" / "18"
    offline = TargetInfo.from_sharedir(18, share)
    assert set(offline.extensions) == set(targets[18].extensions)
    assert "1.8" in offline.extensions["hstore"]


def test_md5_password_refused_by_a_scram_only_target(source: PgServer, targets: dict[int, TargetInfo],
                                                      findings: dict[int, list[Finding]]) -> None:
    """Roles move with their password hashes: an MD5 hash cannot log in where pg_hba.conf takes
    scram-sha-256 only (these targets, like the official images)."""
    for major, fs in findings.items():
        assert targets[major].hba_methods == {"scram-sha-256"}
        [f] = find(fs, "MD5_PASSWORD_REFUSED")
        assert (f.object, f.severity) == ("legacy", Severity.BLOCKER) and "password_encryption" in f.hint
    # A target that still accepts md5 (or whose rules are unknown) raises nothing.
    for methods in ({"md5", "scram-sha-256"}, None):
        t = dataclasses.replace(targets[18], hba_methods=methods)
        assert not find(check(source.ci(), t), "MD5_PASSWORD_REFUSED")
