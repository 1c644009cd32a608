"""The fixture itself: every major starts, authenticates with scram and is ready for logical replication."""

from __future__ import annotations

import psycopg
import pytest

from pgtools import PgServer


def test_server_starts_with_logical_settings(pg: PgServer) -> None:
    assert pg.version.split(".")[0] == str(pg.major)
    assert pg.scalar("SHOW wal_level") == "logical"
    assert int(str(pg.scalar("SHOW max_replication_slots"))) >= 16
    # Password auth is enforced: a wrong password is refused.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn(password="wrong"), connect_timeout=5)
    for tool in ("postgres", "initdb", "pg_ctl", "pg_dump", "pg_restore", "pg_dumpall", "psql",
                 "pg_basebackup"):
        assert (pg.bindir / tool).exists(), tool
