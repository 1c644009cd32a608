"""Copy progress shared by the databases that copy.py copies side by side.

Several threads count into one ``Progress`` (each database's row workers and pg_restore
readers): one lock covers the counters and the report, so a report never shows half an
update. Each database keeps its own account, so that a database copied again from the start
(copy.py's fallback to the plain schema order) takes back exactly what it had counted,
whatever the other databases counted meanwhile.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..base import Progress, ProgressCallback


@dataclass
class _Account:
    bytes: int = 0
    tables: int = 0


class Tally:
    def __init__(self, prog: Progress, progress: ProgressCallback | None) -> None:
        self.prog = prog
        self._progress = progress
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}

    def _report(self) -> None:
        if self._progress:
            self._progress(self.prog)

    def say(self, current: str) -> None:
        with self._lock:
            self.prog.current = current
            self._report()

    def add(self, db: str, nbytes: int, tables: int, current: str | None = None) -> None:
        with self._lock:
            acc = self._accounts.setdefault(db, _Account())
            acc.bytes += nbytes
            acc.tables += tables
            self.prog.bytes_copied += nbytes
            self.prog.tables_copied += tables
            if current is not None:
                self.prog.current = current
            self._report()

    def take_back(self, db: str) -> None:
        """Forget what ``db`` counted (it is copied again from the start)."""
        with self._lock:
            acc = self._accounts.pop(db, _Account())
            self.prog.bytes_copied -= acc.bytes
            self.prog.tables_copied -= acc.tables

    def database_done(self) -> None:
        with self._lock:
            self.prog.databases_copied += 1
