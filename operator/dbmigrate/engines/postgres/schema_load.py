"""Run a database's pre-data script on the target, in order except within runs of
independent tables, where the biggest tables come first (``schema_plan`` says which and
why), telling the caller which tables exist as soon as they are committed.

Each serial step and each batch of a run is one transaction: a commit per statement cost
more than the DDL itself (measured: 2000 tables took 13 s committed one by one, 8.6 s in one
transaction). Nothing needs atomicity across steps: a copy that fails drops the database
and starts it again (copy.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from ...redact import redact
from . import schema_plan
from .conninfo import ConnInfo
from .schema_plan import Entry, Serial

log = logging.getLogger(__name__)

# As for psql and pg_restore (commands.RESTORE_PGOPTIONS).
_OPTIONS = "-c synchronous_commit=off"

Created = Callable[[set[tuple[str, str]]], None]


class SchemaError(RuntimeError):
    """A statement of the schema failed. ``reordered``: it ran in a reordered run, so the
    caller may redo the schema in plain script order."""

    def __init__(self, message: str, *, reordered: bool) -> None:
        super().__init__(message)
        self.reordered = reordered


@dataclass
class SchemaStats:
    entries: int = 0
    reordered_tables: int = 0
    seconds: float = 0.0


def _sql(entries: list[Entry]) -> str:
    """The entries' statements, each preceded by its settings when the session's may differ."""
    parts: list[str] = []
    current: tuple[str, ...] | None = None
    for e in entries:
        if e.settings != current:
            parts.extend(e.settings)
        parts.append(e.sql)
        current = None if "\nSET " in e.sql or "set_config(" in e.sql else e.settings
    return "\n".join(parts)


def _what(entries: list[Entry]) -> str:
    first, last = entries[0], entries[-1]
    span = f"{first.kind} {first.schema}.{first.name}"
    if len(entries) > 1:
        span += f" ... {last.kind} {last.schema}.{last.name} ({len(entries)} items)"
    return span


def _run(conn: psycopg.Connection[tuple[object, ...]], entries: list[Entry], *, reordered: bool,
         on_created: Created | None) -> None:
    try:
        with conn.transaction():
            conn.execute(_sql(entries).encode())
    except psycopg.Error as e:
        raise SchemaError(f"creating the schema failed at {_what(entries)}: {redact(str(e).strip())}",
                          reordered=reordered) from e
    if on_created:
        on_created({(e.schema, e.name) for e in entries if e.kind == "TABLE"})


def apply(target: ConnInfo, dbname: str, script: str, *,
          independent: set[tuple[str, str]] | None = None,
          priority: dict[tuple[str, str], int] | None = None,
          on_created: Created | None = None) -> SchemaStats:
    """Run ``script`` (pre-data, after the CREATE DATABASE) in ``dbname``. ``independent``:
    tables that may be reordered (None: plain script order); ``priority``: those to create
    first, highest first (the row sizes); ``on_created``: called with the tables of each
    committed transaction."""
    t0 = time.monotonic()
    preamble, entries = schema_plan.parse(script)
    steps = schema_plan.plan(entries, independent or set())
    stats = SchemaStats(entries=len(entries))
    with psycopg.connect(target.db(dbname).conninfo(), autocommit=True, options=_OPTIONS) as conn:
        if preamble.strip():
            conn.execute(preamble.encode())
        for step in steps:
            if isinstance(step, Serial):
                _run(conn, step.entries, reordered=False, on_created=on_created)
                continue
            stats.reordered_tables += len(step.groups)
            if step.hoisted:
                _run(conn, step.hoisted, reordered=True, on_created=None)
            for batch in schema_plan.batches(schema_plan.first(step.groups, priority or {})):
                _run(conn, [e for g in batch for e in g], reordered=True, on_created=on_created)
            if step.deferred:
                _run(conn, step.deferred, reordered=True, on_created=None)
    stats.seconds = time.monotonic() - t0
    return stats
