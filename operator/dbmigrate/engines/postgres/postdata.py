"""Indexes and key constraints of a table built as soon as its rows are in (postdata_plan.py
says which dump entries), one table at a time, while the other tables still load.

The row copy often ends with one big table streaming alone. Measured (1 GB, 2000 small
tables, 15 -> 18): the index phase after the rows fell from 4-5.5 s to 0.8-1.5 s, but on 2
saturated cores the rows took about as much longer (net: none). It pays where cores are idle
while that last table streams.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from . import commands
from .conninfo import ConnInfo
from .postdata_plan import Key, ObjectId
from .runner import run
from .stream import fetch_at

log = logging.getLogger(__name__)

# Per ordinary table (partitions included) of the given (schema, name) pairs: its indexes that back no
# constraint (pg_dump: INDEX, catalog pg_class), and its primary key, unique and exclusion
# constraints (CONSTRAINT, catalog pg_constraint). A partition's own entries are standalone
# statements; attaching them to the parent's (INDEX ATTACH) stays for the final restore.
TABLE_KEYS = """
SELECT n.nspname AS schema, c.relname AS name,
       array_agg(x.catalog::bigint) AS catalogs, array_agg(x.oid::bigint) AS oids
FROM (
    SELECT k.conrelid AS rel, 'pg_constraint'::regclass::oid AS catalog, k.oid
    FROM pg_constraint k WHERE k.contype IN ('p', 'u', 'x')
    UNION ALL
    SELECT i.indrelid, 'pg_class'::regclass::oid, i.indexrelid
    FROM pg_index i
    WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k
                      WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
) x
JOIN pg_class c ON c.oid = x.rel
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS w(schema, name) ON w.schema = n.nspname AND w.name = c.relname
WHERE c.relkind = 'r'
GROUP BY n.nspname, c.relname
"""


def table_keys(source: ConnInfo, dbname: str, snapshot: str,
               tables: Iterable[Key]) -> dict[Key, set[ObjectId]]:
    """The dump entries (``TABLE_KEYS``) of ``tables``. The caller picks them by the sizes it
    already has: a size per table costs the source a dozen file look-ups (perf, copying 2000
    small tables: pg_table_size was a third of the source's work, this query a third of that)."""
    wanted = list(tables)
    return {(r["schema"], r["name"]): set(zip(r["catalogs"], r["oids"], strict=True))
            for r in fetch_at(source, dbname, snapshot, TABLE_KEYS,
                              [[s for s, _ in wanted], [n for _, n in wanted]])}


class EarlyIndexes:
    """A worker that restores each queued table's list (``postdata_plan.per_table``) with
    pg_restore. ``finish()`` stops it after the table in hand: the tables it did not start
    are left to the final restore, which runs them in parallel."""

    def __init__(self, bindir: Path | None, target: ConnInfo, dbname: str, dumpdir: Path,
                 lists: dict[Key, str]) -> None:
        self._bindir, self._target, self._dbname, self._dumpdir = bindir, target, dbname, dumpdir
        self.lists = lists
        self.done: set[Key] = set()
        self._queue: list[Key] = []
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        # Daemon: should the copy fail before finish(), the idle worker must not keep the
        # process alive.
        self._thread = threading.Thread(target=self._work, name="early-indexes", daemon=True)
        self._thread.start()

    def _restore(self, key: Key) -> None:
        listfile = self._dumpdir / "early.list"
        listfile.write_text(self.lists[key])
        # One job: the row copy keeps the other cores.
        run(commands.restore_data(self._bindir, self._target, self._dumpdir, self._dbname, 1,
                                  listfile=listfile))
        listfile.unlink()

    @property
    def error(self) -> BaseException | None:
        """What stopped the worker, if anything did (it takes no table after that)."""
        return self._error

    def add(self, key: Key) -> None:
        """Queue a table whose rows are all in (no-op for a table without a list)."""
        if key in self.lists:
            with self._cond:
                self._queue.append(key)
                self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                key = self._queue.pop(0)
            try:
                self._restore(key)
            except BaseException as e:  # returned by finish()
                self._error = e
                return
            self.done.add(key)
            log.debug("built the indexes of %s.%s early", *key)

    def finish(self) -> BaseException | None:
        """Stop after the table in hand (``done`` then holds the tables whose entries were
        restored); the worker's error, if any."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        return self._error
