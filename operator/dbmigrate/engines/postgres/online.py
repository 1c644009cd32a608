"""The operator's calls for an online (logical) execute, over the primitives of `logical`.

Each function is safe to repeat and works on every source database (templates and the copy's
bookkeeping database excluded), naming replication objects with the Migration's tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import logical
from . import logical_sql as lq
from .checks import STATE_DB
from .conninfo import ConnInfo
from .db import connect, fetch

_DATABASES = "SELECT datname AS name FROM pg_database WHERE NOT datistemplate AND datname <> %s ORDER BY 1"


def databases(source: ConnInfo) -> list[str]:
    with connect(source) as s:
        return [r["name"] for r in fetch(s, _DATABASES, [STATE_DB])]


def names(source: ConnInfo, tag: str) -> list[logical.Names]:
    return [logical.Names(db, tag) for db in databases(source)]


def start(source: ConnInfo, target: ConnInfo, tag: str) -> int:
    """Publication + slot on the source and a subscription on the target, per database."""
    ns = names(source, tag)
    for n in ns:
        logical.start(source, target, n)
    return len(ns)


@dataclass(frozen=True)
class ReplicationState:
    databases: int
    subscribed: int
    initial_sync_done: bool
    lag_bytes: int
    lag_seconds: float
    # The initial copy's progress, over the subscribed databases: tables whose copy is done,
    # of all, and the bytes of the target databases it fills.
    tables_synced: int = 0
    tables_total: int = 0
    bytes_copied: int = 0


def measure(source: ConnInfo, target: ConnInfo, tag: str) -> ReplicationState:
    ns = names(source, tag)
    subscribed, synced, lag_b, lag_s = 0, True, 0, 0.0
    tables, tables_synced, copied = 0, 0, 0
    for n in ns:
        with connect(target, n.dbname) as t:
            row = fetch(t, lq.SYNC_PROGRESS, [n.subscription])[0]
        if not row["subscriptions"]:
            synced = False
            continue
        subscribed += 1
        total, done = int(row["total"]), int(row["synced"])
        tables, tables_synced, copied = tables + total, tables_synced + done, copied + int(row["bytes"])
        synced = synced and done == total
        try:
            lag = logical.lag(source, n)
        except LookupError:
            synced = False
            continue
        lag_b += lag.bytes
        lag_s = max(lag_s, lag.seconds)
    return ReplicationState(len(ns), subscribed, synced and subscribed == len(ns), lag_b, lag_s,
                            tables_synced, tables, copied)


def switchover(source: ConnInfo, target: ConnInfo, tag: str, repoint: Callable[[], None],
               max_write_downtime: float) -> float:
    """Fence, catch up, copy sequences, repoint (point of no return), clean up. Returns the
    write interruption in seconds; raises logical.SwitchoverAborted with the source unfenced."""
    result = logical.switchover(source, target, names(source, tag), repoint,
                                max_write_downtime=max_write_downtime)
    return result.fence_seconds


def cleanup(source: ConnInfo, target: ConnInfo | None, tag: str) -> None:
    for n in names(source, tag):
        logical.cleanup(source, target, n)


def fence(source: ConnInfo) -> None:
    logical.fence(source)


def unfence(source: ConnInfo) -> None:
    logical.unfence(source, None)
