"""Verify a copy: compare source and target database by database.

Steps: the database and role lists; then in each source database that the target has,
object counts by kind, sequence values, and per table the exact row count and a content
checksum (the whole table up to ``checksum_rows`` estimated rows, else the first
``checksum_rows`` rows by primary key: bounded cost on huge tables). Everything found goes
into a ``VerificationDiff``; an empty one means verified.

For a live source (online strategy) run it after the fence, when both sides are still.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.sql

from ..base import VerificationDiff
from . import verify_sql as q
from .checks import STATE_DB
from .conninfo import ConnInfo
from .db import connect, execute, fetch, fetch_one


@dataclass(frozen=True)
class VerifyOptions:
    checksum_rows: int | None = 1_000_000   # None: always checksum whole tables
    exclude_databases: frozenset[str] = frozenset({STATE_DB})


def verify(source: ConnInfo, target: ConnInfo, opts: VerifyOptions | None = None) -> VerificationDiff:
    """Everything, against the source as it is now: roles, databases, then each database."""
    opts = opts or VerifyOptions()
    diff, src_dbs, tgt_dbs = _globals(source, target, opts)
    for db in src_dbs:
        if db in tgt_dbs:
            _verify_db(source, target, db, opts, diff)
    return diff


def verify_database(source: ConnInfo, target: ConnInfo, db: str, opts: VerifyOptions | None = None,
                    snapshot: str | None = None) -> VerificationDiff:
    """One database. With ``snapshot`` (an exported source snapshot, e.g. the copy's), the
    source is read as of that snapshot: a copy of a live source then verifies exactly."""
    diff = VerificationDiff()
    _verify_db(source, target, db, opts or VerifyOptions(), diff, snapshot)
    return diff


def verify_globals(source: ConnInfo, target: ConnInfo, opts: VerifyOptions | None = None) -> VerificationDiff:
    """Roles and the list of databases (what ``verify_database`` does not look at)."""
    return _globals(source, target, opts or VerifyOptions())[0]


def _globals(source: ConnInfo, target: ConnInfo, opts: VerifyOptions) -> tuple[VerificationDiff, list[str], set[str]]:
    diff = VerificationDiff()
    with connect(source) as s, connect(target) as t:
        src_dbs = [r["name"] for r in fetch(s, q.DATABASES) if r["name"] not in opts.exclude_databases]
        tgt_dbs = {r["name"] for r in fetch(t, q.DATABASES)}
        tgt_roles = {r["name"] for r in fetch(t, q.ROLES)}
        for r in fetch(s, q.ROLES):
            if r["name"] not in tgt_roles:
                diff.objects.append(f"role {r['name']}: missing on target")
    diff.objects += [f"database {db}: missing on target" for db in src_dbs if db not in tgt_dbs]
    return diff, src_dbs, tgt_dbs


def _verify_db(source: ConnInfo, target: ConnInfo, db: str, opts: VerifyOptions,
               diff: VerificationDiff, snapshot: str | None = None) -> None:
    with connect(source, db) as s, connect(target, db) as t:
        if snapshot is not None:
            execute(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            execute(s, psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(snapshot)))
        sc = {r["kind"]: r["n"] for r in fetch(s, q.OBJECT_COUNTS)}
        tc = {r["kind"]: r["n"] for r in fetch(t, q.OBJECT_COUNTS)}
        for kind, n in sc.items():
            if tc.get(kind) != n:
                diff.objects.append(f"{db}: {kind} {n} on source, {tc.get(kind)} on target")

        tseq = {(r["schema"], r["name"]): r["last_value"] for r in fetch(t, q.SEQUENCES)}
        for r in fetch(s, q.SEQUENCES):
            key = (r["schema"], r["name"])
            if key not in tseq:
                diff.sequences.append(f"{db}.{key[0]}.{key[1]}: missing on target")
            elif tseq[key] != r["last_value"] and not (snapshot is not None and tseq[key] <= r["last_value"]):
                # Sequences are not transactional: against a live source read through a
                # snapshot, the copy's value may only lag (pg_dump read it a little earlier).
                diff.sequences.append(f"{db}.{key[0]}.{key[1]}: last_value {r['last_value']} "
                                      f"on source, {tseq[key]} on target")

        for tab in fetch(s, q.TABLES):
            _verify_table(s, t, db, tab, opts, diff)


def _verify_table(s: Any, t: Any, db: str, tab: dict[str, Any], opts: VerifyOptions,
                  diff: VerificationDiff) -> None:
    name = f"{db}.{tab['schema']}.{tab['name']}"
    count_q = q.row_count(tab["schema"], tab["name"])
    try:
        tn = fetch_one(t, count_q)["n"]
    except psycopg.errors.UndefinedTable as e:  # a missing table is a finding, not a crash
        diff.objects.append(f"{name}: {type(e).__name__} on target: {str(e).splitlines()[0]}")
        return
    sn = fetch_one(s, count_q)["n"]
    if sn != tn:
        diff.rows.append(f"{name}: {sn} rows on source, {tn} on target")
        return
    limit = opts.checksum_rows if opts.checksum_rows is not None and tab["estimate"] > opts.checksum_rows else None
    pk = list(zip(tab["pk"], tab["pk_collatable"], strict=True))
    sum_q = q.checksum(tab["schema"], tab["name"], pk, limit)
    if fetch_one(s, sum_q)["sum"] != fetch_one(t, sum_q)["sum"]:
        scope = f"first {limit} rows" if limit else "all rows"
        diff.checksums.append(f"{name}: content differs ({scope} compared)")
