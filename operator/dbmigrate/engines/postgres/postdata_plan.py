"""Which entries of a dump's post-data section may run as soon as one table's rows are in.

A table's indexes and key constraints (primary key, unique, exclusion) need nothing but that
table's rows. Building them while other tables still load fills the cores the row copy leaves
idle (a big table streams on one worker to the end, and on a ``wal_level=minimal`` target it
is not split: see ``stream.plan``).

Entries are matched in ``pg_restore --list`` output by (catalog OID, object OID), never by
name: names there are printed unquoted (``CONSTRAINT public we ird we ird_pkey``).
Everything else (foreign keys, triggers, index attachments, comments, sequence values,
materialized view data) stays in the final restore, which runs after every row is in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# "<dump id>; <catalog OID> <object OID> <TYPE> ...", e.g. "3215; 2606 16390 CONSTRAINT ..."
_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) ")

Key = tuple[str, str]            # (schema, table)
ObjectId = tuple[int, int]       # (catalog OID, object OID): (2606, constraint) or (1259, index)


def _object(line: str) -> ObjectId | None:
    m = _ENTRY.match(line)
    return (int(m.group(2)), int(m.group(3))) if m else None


def per_table(toc: str, objects: Mapping[Key, Iterable[ObjectId]]) -> dict[Key, str]:
    """For each table with at least one of its ``objects`` in the archive's list ``toc``, a
    list file restoring exactly those entries."""
    owner = {o: key for key, objs in objects.items() for o in objs}
    lines: dict[Key, list[str]] = {}
    for line in toc.splitlines():
        obj = _object(line)
        if obj is not None and obj in owner:
            lines.setdefault(owner[obj], []).append(line)
    return {key: "\n".join(ls) + "\n" for key, ls in lines.items()}


def without(toc: str, done: Iterable[ObjectId]) -> str:
    """The list ``toc`` with the entries of ``done`` commented out (pg_restore -L skips them)."""
    skip = set(done)
    out = []
    for line in toc.splitlines():
        obj = _object(line)
        out.append(f";{line}" if obj is not None and obj in skip else line)
    return "\n".join(out) + "\n"
