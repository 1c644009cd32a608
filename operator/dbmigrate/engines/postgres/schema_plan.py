"""Pure: cut the pre-data script into steps, so the row copy can start before the schema
is complete.

Why: the schema of a database with thousands of tables is DDL the server runs at a
millisecond or more per table, on one core, while the rest of the machine waits (measured:
2000 small tables took 1.4 s on tmpfs and 7 s on a churned ext4 disk, at 50 % CPU on 2
cores). Rows of the biggest tables can be copying meanwhile, if those tables are created
first and committed.

The script (``pg_restore --section=pre-data -f``, after ``split_create``) is a preamble of
session settings, then one entry per archive item, each introduced by a header::

    --
    -- Name: t0; Type: TABLE; Schema: small; Owner: app
    --

pg_dump writes entries in an order where everything an entry needs comes before it. We keep
that order and reorder only within a *run*: consecutive entries that start with a TABLE
entry whose table is ``independent`` — the caller vouches, from the source catalog, that
such a table needs no other table to exist (no parent, not a partition, not typed, no column
of a table's row type) — and continue with more of these and the entries pg_dump writes
between them for serial and identity columns:

* ``CREATE SEQUENCE`` entries (a serial column's sequence, written right after its table)
  need no table: they run first, *hoisted*;
* ``SEQUENCE OWNED BY`` and identity (``ALTER TABLE ... ADD GENERATED``) entries need their
  table: they run last, *deferred*;
* a COMMENT entry goes with the entry it names, written right before it.

Anything else ends the run and runs in order. A run of fewer than ``min_run`` tables is not
worth the bookkeeping and runs in order too.

Session settings (``SET default_tablespace = ...`` between entries, the preamble's SETs) are
tracked so that every entry, moved or not, runs with the settings it would have had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"^-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$")
# Statements that change session state for the entries after them (pg_dump writes these
# between entries and in the preamble).
_SETTING = re.compile(r"^(?:SET (\w+) = .*;|SELECT pg_catalog\.set_config\('(\w+)', .*\);)$")
# psql meta-commands pg_dump 17.6+/18 brackets its scripts with; they are not SQL.
_META = re.compile(r"^\\(?:restrict|unrestrict)\b")


@dataclass(frozen=True)
class Entry:
    kind: str                  # "TABLE", "COMMENT", "SEQUENCE", ...
    schema: str
    name: str
    sql: str                   # the entry's statements (and settings written after them)
    settings: tuple[str, ...]  # the SET statements in force when the entry starts


@dataclass(frozen=True)
class Serial:
    entries: list[Entry]


@dataclass(frozen=True)
class Run:
    hoisted: list[Entry]       # sequences (and their comments): before every table
    groups: list[list[Entry]]  # a table and its comments each; independent of one another
    deferred: list[Entry]      # what needs the run's tables: after all of them, in order
    original: list[Entry] = field(default_factory=list)  # all of the above, in script order


Step = Serial | Run


@dataclass
class _Settings:
    order: list[str] = field(default_factory=list)
    value: dict[str, str] = field(default_factory=dict)

    def apply(self, line: str) -> None:
        m = _SETTING.match(line)
        if m:
            name = m.group(1) or m.group(2)
            if name not in self.value:
                self.order.append(name)
            self.value[name] = line

    def snapshot(self) -> tuple[str, ...]:
        return tuple(self.value[n] for n in self.order)


def parse(script: str) -> tuple[str, list[Entry]]:
    """(preamble, entries) of a pre-data script; psql meta-commands are dropped."""
    lines = [ln for ln in script.split("\n") if not _META.match(ln)]
    heads = [i for i, ln in enumerate(lines) if _HEADER.match(ln)
             and i > 0 and lines[i - 1] == "--" and i + 1 < len(lines) and lines[i + 1] == "--"]
    settings = _Settings()
    first = heads[0] - 1 if heads else len(lines)
    preamble = "\n".join(lines[:first])
    for ln in lines[:first]:
        settings.apply(ln)
    entries: list[Entry] = []
    for n, h in enumerate(heads):
        end = heads[n + 1] - 1 if n + 1 < len(heads) else len(lines)
        m = _HEADER.match(lines[h])
        assert m is not None
        body = lines[h - 1:end]
        entries.append(Entry(kind=m.group(2), schema=m.group(3), name=m.group(1),
                             sql="\n".join(body), settings=settings.snapshot()))
        for ln in body:
            settings.apply(ln)
    return preamble, entries


def _names(comment: Entry, entry: Entry) -> bool:
    """A COMMENT entry on ``entry`` (or one of its table's columns)."""
    if comment.kind != "COMMENT" or comment.schema != entry.schema:
        return False
    if entry.kind == "TABLE":
        return comment.name == f"TABLE {entry.name}" or comment.name.startswith(f"COLUMN {entry.name}.")
    return comment.name == f"{entry.kind} {entry.name}"


def _owner(bucket: list[Entry]) -> Entry:
    """The last entry of a bucket that is not a comment (what a following comment may name)."""
    return next((x for x in reversed(bucket) if x.kind != "COMMENT"), bucket[-1])


def _body(entry: Entry) -> str:
    """The entry's first statement (after its header)."""
    return "\n".join(ln for ln in entry.sql.split("\n")[3:] if ln.strip()).lstrip()


def plan(entries: list[Entry], independent: set[tuple[str, str]], min_run: int = 8) -> list[Step]:
    """Steps in script order: runs of independent tables as Run, the rest Serial."""
    steps: list[Step] = []
    serial: list[Entry] = []
    run: Run | None = None
    last: list[Entry] = []  # the bucket the previous entry went to (a COMMENT may follow it)

    def close_run() -> None:
        nonlocal run
        if run is None:
            return
        if len(run.groups) >= min_run:
            if serial:
                steps.append(Serial(list(serial)))
                serial.clear()
            steps.append(run)
        else:
            serial.extend(run.original)
        run = None

    for e in entries:
        if e.kind == "TABLE" and (e.schema, e.name) in independent:
            if run is None:
                run = Run([], [], [], [])
            last = [e]
            run.groups.append(last)
        elif run is not None and last and _names(e, _owner(last)):
            last.append(e)
        elif run is not None and e.kind == "SEQUENCE" and _body(e).startswith("CREATE SEQUENCE "):
            run.hoisted.append(e)
            last = run.hoisted
        elif run is not None and (e.kind == "SEQUENCE OWNED BY" or (
                e.kind == "SEQUENCE" and _body(e).startswith("ALTER TABLE "))):
            run.deferred.append(e)
            last = run.deferred
        else:
            close_run()
            serial.append(e)
            last = []
            continue
        assert run is not None
        run.original.append(e)
    close_run()
    if serial:
        steps.append(Serial(serial))
    return steps


def batches(groups: list[list[Entry]], first: int = 8, per_batch: int = 50) -> list[list[list[Entry]]]:
    """Cut a Run's groups into batches, one transaction each: a commit per table would cost
    as much as the DDL, one commit at the end would hold every table back until then. The
    first batch is small: it holds the biggest tables, whose rows should start soonest."""
    out = [groups[:first]] if groups[:first] else []
    return out + [groups[i:i + per_batch] for i in range(first, len(groups), per_batch)]


def first(groups: list[list[Entry]], priority: dict[tuple[str, str], int]) -> list[list[Entry]]:
    """The groups of the tables in ``priority`` first, highest first (the biggest tables: the
    row copy can start on them while the rest of the schema is created), then the others in
    script order. Allowed because the groups of a Run are independent."""
    def key(g: list[Entry]) -> int:
        return priority.get((g[0].schema, g[0].name), -1)
    ahead = sorted((g for g in groups if key(g) >= 0), key=key, reverse=True)
    return ahead + [g for g in groups if key(g) < 0]
