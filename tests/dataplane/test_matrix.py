"""The version matrix: a realistic server copied to each newer major is verified clean and its
schema, dumped with the target's pg_dump from both sides, is the same after normalisation."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import realistic
from dbmigrate.engines.postgres.copy import CopyOptions, snapshot_copy
from dbmigrate.engines.postgres.verify import VerifyOptions, verify
from pgtools import PgServer, StartServer, schema_dump

PAIRS = [(15, 16), (15, 17), (15, 18), (16, 18), (17, 18)]


def roles_dump(server: PgServer, bindir: Path) -> list[str]:
    out = subprocess.run([str(bindir / "pg_dumpall"), "--roles-only", "--no-role-passwords"],
                         env={**server.ci().env(), "PATH": "/usr/bin:/bin"}, check=True,
                         capture_output=True, text=True).stdout
    # The administrator itself is the operator's on each side; everything else must match.
    # 16+ records membership options and grantors; a 15 source is dumped without them, and
    # its memberships mean exactly "WITH INHERIT TRUE GRANTED BY <bootstrap superuser>".
    return sorted(re.sub(r" WITH INHERIT TRUE| GRANTED BY postgres", "", line)
                  for line in out.splitlines()
                  if line and not line.startswith(("--", "SET ", "\\"))
                  and not re.search(r"ROLE postgres\b", line))


@pytest.mark.parametrize(("src_major", "tgt_major"), PAIRS, ids=[f"{a}to{b}" for a, b in PAIRS])
def test_copy_across_versions(pg_factory: StartServer, tmp_path: Path, src_major: int,
                              tgt_major: int) -> None:
    src, tgt = pg_factory(src_major), pg_factory(tgt_major)
    # pgserver's 16 ships no contrib: the extensions only where both sides have them.
    realistic.load(src, extensions=16 not in (src_major, tgt_major))
    # early_index_bytes=0: every table's keys and indexes are built beside the rows, the rest
    # of post-data after them; the schema comparison below proves nothing was lost or doubled.
    snapshot_copy(src.ci(), tgt.ci(), CopyOptions(workdir=tmp_path / "w", bindir=tgt.bindir, jobs=2,
                                                  early_index_bytes=0))

    diff = verify(src.ci(), tgt.ci(), VerifyOptions(checksum_rows=None))
    assert diff.clean, diff.summary(20)
    for db in realistic.DATABASES:
        assert schema_dump(src, db, tgt.bindir) == schema_dump(tgt, db, tgt.bindir), db
    assert roles_dump(src, tgt.bindir) == roles_dump(tgt, tgt.bindir)
    # Spot checks the generic comparison could miss: large objects, non-ASCII, comments, grants.
    assert tgt.scalar("SELECT convert_from(lo_get(photo), 'UTF8') FROM inventory.items "
                      "WHERE sku = 'SKU-2'", "shop") == "große Datei 2"
    assert tgt.scalar("SELECT obj_description('sales.orders'::regclass)", "shop") == "Bestellungen – orders 注文"
    assert tgt.scalar("SELECT has_table_privilege('alice', 'sales.customers', 'SELECT')", "shop") is True
    acl = ("SELECT array_agg(a::text ORDER BY a::text) FROM pg_database, unnest(datacl) a "
           "WHERE datname = 'analytics ü'")
    assert src.scalar(acl) == tgt.scalar(acl)
    assert tgt.scalar("SELECT has_database_privilege('alice', 'analytics ü', 'CONNECT')") is True
    assert tgt.scalar("SELECT has_database_privilege('app_reader', 'analytics ü', 'CONNECT')") is False
    assert tgt.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                      "WHERE datname = 'shop'") == "the shop – Laden"
