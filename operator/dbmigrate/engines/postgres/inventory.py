"""Inventory of a server: what it runs and holds, as plain data (no psycopg types leak out).

Steps: server version and replication settings (from the maintenance database), databases,
roles, then per database its extensions, tables (size, row estimate, key) and large objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import inventory_sql as q
from .budget import Slots
from .conninfo import ConnInfo
from .db import connect, fetch, fetch_one

REPLICATION_SETTINGS = [
    "wal_level", "max_replication_slots", "max_wal_senders", "max_worker_processes",
    "max_logical_replication_workers", "max_connections",
]


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    kind: str            # r = table, p = partitioned table (no storage of its own)
    persistence: str     # p = permanent, u = unlogged
    replica_identity: str  # d default(pk), n nothing, f full, i index
    bytes: int
    rows_estimate: int
    has_pk: bool
    is_partition: bool

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Database:
    name: str
    bytes: int
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str  # c = libc, i = icu, b = builtin (17+)
    icu_locale: str | None
    extensions: dict[str, str] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    large_objects: int = 0


@dataclass
class Inventory:
    version: str
    version_num: int
    settings: dict[str, str]
    databases: list[Database]
    roles: list[dict[str, Any]]

    @property
    def major(self) -> int:
        return self.version_num // 10000

    @property
    def bytes_total(self) -> int:
        return sum(d.bytes for d in self.databases)

    def database(self, name: str) -> Database:
        return next(d for d in self.databases if d.name == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect(ci: ConnInfo, *, exclude: frozenset[str] = frozenset()) -> Inventory:
    with connect(ci) as conn:
        server = fetch_one(conn, q.SERVER)
        settings = {r["name"]: r["setting"] for r in fetch(conn, q.SETTINGS, [REPLICATION_SETTINGS])}
        dbsql = q.DATABASES_17 if server["version_num"] >= 170000 else q.DATABASES
        databases = [Database(**r) for r in fetch(conn, dbsql) if r["name"] not in exclude]
        roles = fetch(conn, q.ROLES)
    for d in databases:
        with connect(ci, d.name) as conn:
            d.extensions = {r["name"]: r["version"] for r in fetch(conn, q.EXTENSIONS)}
            d.tables = [Table(**r) for r in fetch(conn, q.TABLES)]
            d.large_objects = int(fetch_one(conn, q.LARGE_OBJECTS)["n"])
    return Inventory(server["version"], server["version_num"], settings, databases, roles)


def connection_slots(ci: ConnInfo) -> Slots:
    """The server's client connection slots: how many, reserved, in use (``budget``)."""
    with connect(ci) as conn:
        return Slots(**fetch_one(conn, q.CONNECTION_SLOTS))
