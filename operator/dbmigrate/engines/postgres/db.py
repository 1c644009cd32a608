"""psycopg connection and query helpers shared by the engine's modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from .conninfo import ConnInfo

Query = str | sql.Composable
Row = dict[str, Any]

CONNECT_TIMEOUT = 10


@contextmanager
def connect(ci: ConnInfo, dbname: str | None = None) -> Iterator[psycopg.Connection[Row]]:
    """Autocommit connection returning dict rows; closed on exit."""
    target = ci.db(dbname) if dbname else ci
    # The engine's own sessions must keep working on a fenced source (cleanup after the switch).
    conn = psycopg.connect(target.conninfo(), autocommit=True, row_factory=dict_row,
                           connect_timeout=CONNECT_TIMEOUT,
                           options="-c default_transaction_read_only=off")
    try:
        yield conn
    finally:
        conn.close()


def fetch(conn: psycopg.Connection[Row], query: Query, params: Sequence[Any] | None = None) -> list[Row]:
    with conn.cursor() as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def fetch_one(conn: psycopg.Connection[Row], query: Query, params: Sequence[Any] | None = None) -> Row:
    rows = fetch(conn, query, params)
    if not rows:
        raise LookupError("query returned no row")
    return rows[0]


def execute(conn: psycopg.Connection[Row], query: Query, params: Sequence[Any] | None = None) -> None:
    with conn.cursor() as cur:
        cur.execute(query, params)  # type: ignore[arg-type]


def server_major(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version) // 10000
