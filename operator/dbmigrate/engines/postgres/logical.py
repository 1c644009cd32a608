"""Online switchover primitives (strategy ``logical``), one database at a time.

Order used by an execute-mode migration (``switchover`` runs steps 5-8):
  1. ``copy.snapshot_copy(..., schema_only=True)``: roles and every database's schema;
  2. ``start`` per database: publication and slot on the source, subscription on the target
     (the subscription's initial copy loads the tables);
  3. ``initial_sync_done`` until true, then ``lag`` until small;
  4. nothing so far has changed the source beyond the publication and the slot, which
     ``cleanup`` removes: that is the whole abort path before the fence;
  5. ``fence``: source read-only by default, client sessions ended (bounded wait);
  6. ``wait_applied``: the target has applied everything up to the fence LSN (bounded; on
     timeout ``unfence`` and the source serves writes as before);
  7. ``copy_sequences`` and ``refresh_matviews`` on the target;
  8. the caller repoints clients (the point of no return), then ``cleanup``.

Every step is safe to repeat.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass

import psycopg

from . import logical_sql as q
from .conninfo import ConnInfo
from .db import Row, connect, execute, fetch, fetch_one

POLL = 0.01


class SwitchoverAborted(RuntimeError):
    """The switchover gave up before the point of no return; the source was unfenced."""


@dataclass(frozen=True)
class Names:
    """Replication object names for one database; ``tag`` tells migrations apart."""

    dbname: str
    tag: str = "m"

    @property
    def slot(self) -> str:
        # Slot names allow [a-z0-9_] only; the database name may be anything.
        h = hashlib.sha256(self.dbname.encode()).hexdigest()[:10]
        return f"dbmigrate_{self.tag}_{h}"

    @property
    def subscription(self) -> str:
        return self.slot

    @property
    def publication(self) -> str:
        return self.slot


@dataclass(frozen=True)
class Lag:
    bytes: int
    seconds: float


@dataclass(frozen=True)
class FenceState:
    """What ``unfence`` needs to restore the source exactly."""

    previous: str | None   # default_transaction_read_only in postgresql.auto.conf, if any
    lsn: str               # WAL position once every client session had ended
    terminated: int
    next_xid: int = 0      # the next transaction id then: if it moves, someone wrote since


def start(source: ConnInfo, target: ConnInfo, names: Names, *,
          source_from_target: ConnInfo | None = None) -> None:
    """``source_from_target``: how the target server reaches the source (in a cluster, the
    source Service), if not the way we do."""
    with connect(source, names.dbname) as s:
        if not fetch(s, q.PUBLICATION_EXISTS, [names.publication]):
            execute(s, q.create_publication(names.publication))
        if not fetch(s, q.SLOT_EXISTS, [names.slot]):
            execute(s, q.CREATE_SLOT, [names.slot])
    via = (source_from_target or source).db(names.dbname)
    with connect(target, names.dbname) as t:
        if not fetch(t, q.SUBSCRIPTION, [names.subscription]):
            execute(t, q.create_subscription(names.subscription, via.conninfo(),
                                             names.publication, names.slot))


def initial_sync_done(target: ConnInfo, names: Names) -> bool:
    with connect(target, names.dbname) as t:
        return int(fetch_one(t, q.NOT_READY_TABLES, [names.subscription])["n"]) == 0


def lag(source: ConnInfo, names: Names) -> Lag:
    with connect(source, names.dbname) as s:
        rows = fetch(s, q.SLOT_STATE, [names.slot])
        if not rows:
            raise LookupError(f"no replication slot {names.slot}")
        seconds = fetch(s, q.REPLAY_LAG, [names.subscription])
    return Lag(int(rows[0]["lag_bytes"] or 0), float(seconds[0]["seconds"]) if seconds else 0.0)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(POLL)


def fence(source: ConnInfo, *, grace: float = 1.0, timeout: float = 10.0,
          keep_pids: frozenset[int] = frozenset()) -> FenceState:
    """Stop writes: new transactions default to read-only; sessions get ``grace`` seconds to
    finish open transactions, then every client session is ended (their uncommitted work
    rolls back, so nothing acknowledged is lost). ``keep_pids``: the caller's own sessions.
    Returns the WAL position to wait for."""
    keep = [list(keep_pids)]
    with connect(source) as s:
        rows = fetch(s, q.AUTO_CONF_READ_ONLY)
        previous = str(rows[0]["setting"]) if rows else None
        execute(s, q.SET_READ_ONLY)
        execute(s, q.RELOAD)
        deadline = time.monotonic() + grace
        while int(fetch_one(s, q.CLIENTS_IN_TRANSACTION, keep)["n"]) and time.monotonic() < deadline:
            time.sleep(POLL)
        terminated = int(fetch_one(s, q.TERMINATE_CLIENTS, keep)["n"])
        # A session that connected between the reload and the terminate is read-only anyway;
        # still, wait until the ended ones are really gone before reading the LSN.
        end = time.monotonic() + timeout
        while int(fetch_one(s, q.CLIENTS_LEFT, keep)["n"]) and time.monotonic() < end:
            terminated += int(fetch_one(s, q.TERMINATE_CLIENTS, keep)["n"])
            time.sleep(POLL)
        lsn, next_xid = _mark(s)
    return FenceState(previous, lsn, terminated, next_xid)


def _mark(s: psycopg.Connection[Row]) -> tuple[str, int]:
    """(WAL position to wait for, next transaction id). A transactional message (ignored by
    pgoutput, changes no catalog or table) committed with synchronous_commit=on flushes WAL at
    once: walsenders only send flushed WAL, and on an async-commit source the last commits
    could otherwise wait for the WAL writer (wal_writer_delay)."""
    with s.transaction():
        execute(s, q.SYNC_COMMIT_LOCAL)
        execute(s, q.FENCE_MESSAGE)
    return str(fetch_one(s, q.CURRENT_LSN)["lsn"]), int(fetch_one(s, q.NEXT_XID)["xid"])


def unfence(source: ConnInfo, state: FenceState | None) -> None:
    """Undo ``fence`` (the abort path). Without a state, reset the setting."""
    with connect(source) as s:
        if state is None or state.previous is None:
            execute(s, q.RESET_READ_ONLY)
        else:
            execute(s, psycopg.sql.SQL("ALTER SYSTEM SET default_transaction_read_only = {}")
                    .format(psycopg.sql.Literal(state.previous)))
        execute(s, q.RELOAD)


def applied(source: ConnInfo, names: Names, lsn: str) -> bool:
    with connect(source, names.dbname) as s:
        rows = fetch(s, q.SLOT_CONFIRMED_PAST, [lsn, names.slot])
        return bool(rows and rows[0]["ok"])


def wait_applied(source: ConnInfo, names: list[Names], lsn: str, timeout: float) -> None:
    """Until every subscription confirmed (= applied, see create_subscription) ``lsn``."""
    with ExitStack() as stack:
        conns = {n.dbname: stack.enter_context(connect(source, n.dbname)) for n in names}
        _wait_applied(conns, names, lsn, timeout)


def _wait_applied(conns: dict[str, psycopg.Connection[Row]], names: list[Names], lsn: str,
                  timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while True:
        pending = [n for n in pending
                   if not fetch(conns[n.dbname], q.SLOT_CONFIRMED_PAST, [lsn, n.slot])[0]["ok"]]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} databases not caught up with {lsn} "
                               f"after {timeout:.1f}s")
        time.sleep(POLL)


def copy_sequences(source: ConnInfo, target: ConnInfo, dbname: str) -> int:
    """Logical replication does not carry sequences: set each to the source's value."""
    with connect(source, dbname) as s, connect(target, dbname) as t:
        return _copy_sequences(s, t)


def _copy_sequences(s: psycopg.Connection[Row], t: psycopg.Connection[Row]) -> int:
    seqs = fetch(s, q.SEQUENCES)
    with t.transaction():
        for r in seqs:
            execute(t, q.SETVAL, [r["last_value"], r["schema"], r["name"]])
    return len(seqs)


def refresh_matviews(target: ConnInfo, dbname: str) -> None:
    """A schema-only restore leaves materialized views unpopulated."""
    with connect(target, dbname) as t:
        for r in fetch(t, q.MATVIEWS):
            execute(t, q.refresh_matview(r["schema"], r["name"]))


def cleanup(source: ConnInfo, target: ConnInfo | None, names: Names, *, timeout: float = 30.0) -> None:
    """Remove subscription, slot(s) and publication; each part only if it is there."""
    suboid = None
    if target is not None:
        try:
            with connect(target, names.dbname) as t:
                rows = fetch(t, q.SUBSCRIPTION, [names.subscription])
                if rows:
                    suboid = rows[0]["oid"]
                    # Detach from the slot first, so that DROP does not need the source.
                    execute(t, q.alter_subscription(names.subscription, "DISABLE"))
                    execute(t, q.alter_subscription(names.subscription, "SET (slot_name = NONE)"))
                    execute(t, q.drop_subscription(names.subscription))
        except psycopg.OperationalError:
            pass  # the target database is gone: nothing to drop there
    with connect(source, names.dbname) as s:
        # The walsender of a just-disabled subscription takes a moment to exit.
        def slot_free() -> bool:
            rows = fetch(s, q.SLOT_STATE, [names.slot])
            return not rows or not rows[0]["active"]
        wait_until(slot_free, timeout, f"slot {names.slot} to become inactive")
        execute(s, q.DROP_SLOT, [names.slot])
        if suboid is not None:
            # Initial-copy workers' slots, left behind if we interrupted the initial copy.
            for r in fetch(s, q.SYNC_SLOTS, [f"pg\\_{suboid}\\_sync\\_%"]):
                execute(s, q.DROP_SLOT_BY_NAME, [r["slot_name"]])
        execute(s, q.drop_publication(names.publication))


def _catch_up(src: dict[str, psycopg.Connection[Row]], tgt: dict[str, psycopg.Connection[Row]],
              names: list[Names], state: FenceState, keep: frozenset[int],
              deadline: float) -> tuple[float, int]:
    """Wait until the target applied everything up to the fence, copy the sequences, and make
    sure nothing was written meanwhile. The read-only default does not stop a session that
    overrides it (SET default_transaction_read_only = off, BEGIN READ WRITE, a superuser's
    tool): if any transaction got an id after the fence, end the sessions again and wait for
    the new position, until the deadline. Returns (when the catch-up first completed, how many
    times writes after the fence had to be caught up too)."""
    lsn, mark = state.lsn, state.next_xid
    rechecks = 0
    first = next(iter(src.values()))
    caught_up: float | None = None
    while True:
        _wait_applied(src, names, lsn, max(0.0, deadline - time.monotonic()))
        caught_up = caught_up or time.monotonic()
        for n in names:
            _copy_sequences(src[n.dbname], tgt[n.dbname])
        if int(fetch_one(first, q.NEXT_XID)["xid"]) == mark:
            return caught_up, rechecks
        if time.monotonic() > deadline:
            raise TimeoutError("the source kept taking writes after the fence "
                               "(a session overriding default_transaction_read_only)")
        fetch_one(first, q.TERMINATE_CLIENTS, [list(keep)])
        lsn, mark = _mark(first)
        rechecks += 1


@dataclass(frozen=True)
class SwitchoverResult:
    fence_seconds: float       # fence -> caught up -> sequences -> repointed: writes stopped
    lsn: str
    phases: dict[str, float]   # fence, catch_up, sequences, repoint (seconds each)
    rechecks: int = 0          # writes that got past the fence, caught up before the repoint


def switchover(source: ConnInfo, target: ConnInfo, names: list[Names], repoint: Callable[[], None],
               *, max_write_downtime: float = 30.0, grace: float = 1.0) -> SwitchoverResult:
    """Steps 5-8 of the module docstring. Raises ``SwitchoverAborted`` (source unfenced) if
    the target does not catch up within ``max_write_downtime``."""
    for n in names:
        # Populated now so readers never meet an unpopulated view; refreshed again at the end.
        refresh_matviews(target, n.dbname)
    with ExitStack() as stack:
        # Connections are opened before the fence: logins (scram) would cost write downtime.
        src = {n.dbname: stack.enter_context(connect(source, n.dbname)) for n in names}
        tgt = {n.dbname: stack.enter_context(connect(target, n.dbname)) for n in names}
        t0 = time.monotonic()
        keep = frozenset(c.info.backend_pid for c in src.values())
        state = fence(source, grace=grace, keep_pids=keep)
        t1 = time.monotonic()
        try:
            t2, rechecks = _catch_up(src, tgt, names, state, keep, deadline=t0 + max_write_downtime)
        except (TimeoutError, psycopg.Error) as e:
            unfence(source, state)
            raise SwitchoverAborted(str(e)) from e
        t3 = time.monotonic()
        repoint()  # the point of no return: from here on, only forward
        elapsed = time.monotonic() - t0
        # Sessions opened on the old server during the fence (read-only) would keep failing
        # writes, and serve reads that no longer change, until the old server stops: end them
        # so that clients reconnect through the Service, to the new server. Best effort: past
        # the point of no return nothing may fail the switchover.
        with suppress(psycopg.Error):
            fetch_one(next(iter(src.values())), q.TERMINATE_CLIENTS, [list(keep)])
    phases = {"fence": t1 - t0, "catch_up": t2 - t1, "sequences": t3 - t2,
              "repoint": elapsed - (t3 - t0)}
    for n in names:
        refresh_matviews(target, n.dbname)
        cleanup(source, target, n)
    return SwitchoverResult(elapsed, state.lsn, phases, rechecks)
