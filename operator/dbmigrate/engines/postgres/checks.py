"""Pre-flight checks for moving a source server to a target major.

Steps: take the source inventory; learn what the target offers (from a running target
server, or from a target image's extension directory); then each check adds findings:
version order, reserved names, extensions, OID-typed columns, collations/ICU/locales,
online-strategy requirements (keys, unlogged tables, large objects, wal_level, slots,
senders), the curated release-note incompatibilities (``incompat``), and the free client
connections the copy needs (``budget``).

Nothing here writes to the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ..base import Finding, Severity
from . import checks_sql as q
from .budget import MINIMUM, Parallelism, Slots, fit
from .conninfo import ConnInfo
from .db import Row, connect, fetch, fetch_one
from .incompat import applicable
from .inventory import Inventory, collect, connection_slots

STATE_DB = "_dbmigrate"  # the copy's bookkeeping database on the target (see copy.py)

# Locale names every glibc has built in, so no target can lack them.
_ALWAYS_LOCALES = {"c", "posix", "c.utf8"}


def _norm_locale(name: str) -> str:
    return name.lower().replace("utf-8", "utf8")


@dataclass
class TargetInfo:
    """What the target version offers; ``locales`` None means unknown (skip that check)."""

    major: int
    extensions: dict[str, set[str]] = field(default_factory=dict)  # name -> versions
    icu: bool = True
    locales: set[str] | None = None
    # Authentication methods of pg_hba.conf's TCP rules; None means unknown (skip that check).
    hba_methods: set[str] | None = None

    @classmethod
    def from_server(cls, ci: ConnInfo) -> TargetInfo:
        with connect(ci) as conn:
            exts: dict[str, set[str]] = {}
            for r in fetch(conn, q.TARGET_EXTENSIONS):
                exts.setdefault(r["name"], set()).add(r["version"])
            return cls(
                major=int(fetch_one(conn, q.TARGET_VERSION)["major"]),
                extensions=exts,
                icu=bool(fetch_one(conn, q.TARGET_ICU)["icu"]),
                locales={_norm_locale(r["locale"]) for r in fetch(conn, q.TARGET_LOCALES)},
                hba_methods=_hba_methods(conn),
            )

    @classmethod
    def from_sharedir(cls, major: int, sharedir: Path, *, icu: bool = True) -> TargetInfo:
        """From a target installation's share directory (e.g. in a Job on the target image):
        ``extension/<name>--<version>.sql`` files name every installable version."""
        exts: dict[str, set[str]] = {}
        for f in (sharedir / "extension").glob("*--*.sql"):
            m = re.fullmatch(r"(.+?)--(?:.+--)?([^-]+)\.sql", f.name)
            if m:
                exts.setdefault(m.group(1), set()).add(m.group(2))
        return cls(major=major, extensions=exts, icu=icu)


def _hba_methods(conn: psycopg.Connection[Row]) -> set[str] | None:
    try:
        return {str(r["auth_method"]) for r in fetch(conn, q.TARGET_HBA_METHODS)}
    except psycopg.errors.InsufficientPrivilege:
        return None


def _f(sev: Severity, code: str, obj: str, msg: str, hint: str, applies_to: str = "all") -> Finding:
    return Finding(sev, code, obj, msg, hint, applies_to)


def check(source: ConnInfo, target: TargetInfo, *, inventory: Inventory | None = None) -> list[Finding]:
    inv = inventory or collect(source)
    findings: list[Finding] = []
    findings += _version(inv, target)
    findings += _reserved(inv)
    findings += _extensions(inv, target)
    findings += _collations(source, inv, target)
    findings += _reg_columns(source, inv)
    findings += _online(source, inv)
    findings += _incompat(source, inv, target)
    findings += _md5_logins(source, target)
    findings += _connections(connection_slots(source))
    return findings


# The copy Job's defaults (two databases side by side; the chart's copyJob.parallelism), and
# the free slots they need within the copy's half share.
DEFAULT_PARALLELISM = Parallelism(lanes=2, jobs=2)
FULL_SPEED_FREE = 2 * DEFAULT_PARALLELISM.sessions


def _connections(slots: Slots) -> list[Finding]:
    """The copy takes at most half of the source's free client slots, and at least
    ``MINIMUM`` (budget.py): say beforehand when that refuses it or slows it down."""
    hint = (f"raise max_connections (a restart) or end idle sessions: {FULL_SPEED_FREE} free "
            "let the copy run at full speed")
    if slots.free < MINIMUM:
        return [_f(Severity.WARNING, "FEW_CONNECTIONS", "max_connections",
                   f"the source accepts {slots.free} more connections ({slots.describe()}); the "
                   f"copy needs at least {MINIMUM}: it would be refused now", hint)]
    got = fit(slots, DEFAULT_PARALLELISM.lanes, DEFAULT_PARALLELISM.jobs)
    if got == DEFAULT_PARALLELISM:
        return []
    return [_f(Severity.INFO, "FEW_CONNECTIONS", "max_connections",
               f"the source accepts {slots.free} more connections ({slots.describe()}); the copy "
               f"takes at most half of them, so it would copy {got.lanes} database(s) at a time "
               f"with {got.jobs} row stream(s) each instead of {DEFAULT_PARALLELISM.lanes} with "
               f"{DEFAULT_PARALLELISM.jobs}: slower, not less safe", hint)]


def _version(inv: Inventory, t: TargetInfo) -> list[Finding]:
    if t.major > inv.major:
        return []
    return [_f(Severity.BLOCKER, "VERSION_NOT_NEWER", inv.version,
               f"the target major {t.major} is not newer than the source {inv.version}",
               "choose a newer target version")]


def _reserved(inv: Inventory) -> list[Finding]:
    return [_f(Severity.BLOCKER, "RESERVED_DATABASE_NAME", d.name,
               f"database name {d.name} is used by dbmigrate for its bookkeeping",
               "rename the database") for d in inv.databases if d.name == STATE_DB]


def _extensions(inv: Inventory, t: TargetInfo) -> list[Finding]:
    out: list[Finding] = []
    for d in inv.databases:
        for name, version in sorted(d.extensions.items()):
            if name not in t.extensions:
                out.append(_f(Severity.BLOCKER, "EXTENSION_MISSING", f"{d.name}.{name}",
                              f"extension {name} {version} is installed in database {d.name} "
                              f"but not available on PostgreSQL {t.major}",
                              "use a target image that ships it, or DROP EXTENSION on the source"))
    return out


def _collations(source: ConnInfo, inv: Inventory, t: TargetInfo) -> list[Finding]:
    out: list[Finding] = []
    for d in inv.databases:
        if d.locale_provider == "i" and not t.icu:
            out.append(_f(Severity.BLOCKER, "ICU_UNAVAILABLE", d.name,
                          f"database {d.name} uses the ICU locale {d.icu_locale} but the "
                          "target is built without ICU",
                          "use a target image built with ICU"))
        if not t.icu:
            with connect(source, d.name) as conn:
                for r in fetch(conn, q.ICU_OBJECTS):
                    out.append(_f(Severity.BLOCKER, "ICU_UNAVAILABLE", f"{d.name}: {r['object']}",
                                  "this object needs an ICU collation but the target is built "
                                  "without ICU", "use a target image built with ICU"))
        if d.locale_provider == "c" and t.locales is not None:
            for loc in {d.collate, d.ctype}:
                if _norm_locale(loc) not in _ALWAYS_LOCALES | t.locales:
                    out.append(_f(Severity.BLOCKER, "LOCALE_MISSING", f"{d.name}: {loc}",
                                  f"database {d.name} uses the libc locale {loc}, which the "
                                  "target does not have", "install that locale in the target image"))
        if d.locale_provider == "c" and _norm_locale(d.collate) not in _ALWAYS_LOCALES:
            out.append(_f(Severity.INFO, "LIBC_COLLATION_VERSION", f"{d.name}: {d.collate}",
                          "text sort order comes from the C library, which differs between "
                          "images: indexes are rebuilt by the copy, but ORDER BY results on "
                          "text may change", "compare query results in test mode"))
    return out


def _reg_columns(source: ConnInfo, inv: Inventory) -> list[Finding]:
    out: list[Finding] = []
    for d in inv.databases:
        with connect(source, d.name) as conn:
            for r in fetch(conn, q.REG_COLUMNS):
                out.append(_f(Severity.WARNING, "REG_TYPE_COLUMN", f"{d.name}: {r['object']}",
                              "this column stores object identifiers; the copy writes them as "
                              "names, which must resolve to the same objects on the target",
                              "store names (text) instead of reg* values"))
    return out


def _online(source: ConnInfo, inv: Inventory) -> list[Finding]:
    """Requirements of the logical (online) strategy."""
    out: list[Finding] = []
    for d in inv.databases:
        for t in d.tables:
            if t.kind != "r":
                continue
            if t.persistence == "u":
                out.append(_f(Severity.WARNING, "UNLOGGED_TABLE", f"{d.name}.{t.qualified}",
                              "unlogged tables are not replicated: its rows written after the "
                              "initial copy are lost by an online switchover",
                              "ALTER TABLE ... SET LOGGED, or use strategy dump", "logical"))
            elif t.replica_identity == "n" or (t.replica_identity == "d" and not t.has_pk):
                out.append(_f(Severity.BLOCKER, "NO_REPLICA_IDENTITY", f"{d.name}.{t.qualified}",
                              "table has no primary key or replica identity: once published, "
                              "its UPDATEs and DELETEs would fail on the source",
                              "add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL, or use "
                              "strategy dump", "logical"))
        if d.large_objects:
            out.append(_f(Severity.BLOCKER, "LARGE_OBJECTS", d.name,
                          f"{d.large_objects} large objects: logical replication does not carry "
                          "them", "use strategy dump, or move them into bytea columns", "logical"))
    s = inv.settings
    if s.get("wal_level") != "logical":
        out.append(_f(Severity.BLOCKER, "WAL_LEVEL", "wal_level",
                      f"wal_level is {s.get('wal_level')}, logical replication needs 'logical'",
                      "set wal_level = logical and restart the source (a short outage)", "logical"))
    # One slot and one sender per database, plus the initial-copy workers' temporary slots.
    need = len(inv.databases) + 2
    with connect(source) as conn:
        slots_used = int(fetch_one(conn, q.SLOTS_USED)["n"])
        senders_used = int(fetch_one(conn, q.SENDERS_USED)["n"])
    for name, used in (("max_replication_slots", slots_used), ("max_wal_senders", senders_used)):
        have = int(s.get(name, "0")) - used
        if have < need:
            out.append(_f(Severity.BLOCKER, name.upper(), name,
                          f"{name} leaves {have} free, an online switchover of "
                          f"{len(inv.databases)} databases needs {need}",
                          f"raise {name} to at least {need + used} (needs a restart)", "logical"))
    return out


# An MD5 hash can only be checked by these methods (password: sent in clear, hashed by the server).
_MD5_CAPABLE = {"md5", "password", "trust"}


def _md5_logins(source: ConnInfo, t: TargetInfo) -> list[Finding]:
    """Roles travel with their password hashes. A target whose pg_hba.conf only takes
    scram-sha-256 over TCP (the official images' default) refuses an MD5 hash: the application
    would be locked out right after the move."""
    if not t.hba_methods or "scram-sha-256" not in t.hba_methods or t.hba_methods & _MD5_CAPABLE:
        return []
    with connect(source) as conn:
        roles = [str(r["object"]) for r in fetch(conn, q.MD5_LOGIN_ROLES)]
    methods = ", ".join(sorted(t.hba_methods))
    return [_f(Severity.BLOCKER, "MD5_PASSWORD_REFUSED", role,
               f"role {role} has an MD5 password hash; the target server authenticates TCP "
               f"connections with {methods} only, so this role could not log in there",
               "on the source: SET password_encryption = 'scram-sha-256'; then ALTER ROLE ... "
               "PASSWORD '<the same password>' (same password, new hash)") for role in roles]


def _incompat(source: ConnInfo, inv: Inventory, t: TargetInfo) -> list[Finding]:
    out: list[Finding] = []
    entries = applicable(inv.major, t.major)
    dbs = [d.name for d in inv.databases]
    for e in entries:
        for dbname in dbs if e.per_database else [source.dbname]:
            with connect(source, dbname) as conn:
                rows = fetch(conn, e.sql, list(e.params))
            for r in rows:
                obj = f"{dbname}: {r['object']}" if e.per_database else str(r["object"])
                out.append(_f(e.severity, e.code, obj, e.message, f"{e.hint} ({e.release})"))
    return out
