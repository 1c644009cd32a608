"""Scenario: the pre-flight check stops a migration the target cannot take, and lets it go once
the source is fixed.

The postgres:16 image here is built from PyPI's pgserver, which ships no contrib extensions; the
15 source (Debian's packages) has them. So a database using hstore cannot move to that image:
  1. a Migration mode=test to 16 of a source whose database `shop` has the hstore extension;
  2. it stops in Checking with Stalled=True, PreflightPassed=False, a blocker finding naming the
     extension and the database, a Warning Event; no copy Job is created;
  3. the customer removes the extension from the source: the check passes on its next run and
     the migration reaches Ready without being recreated.
"""

from __future__ import annotations

import pytest

from .conftest import Kubectl
from .workload import condition, deploy_source, migration, phase, psql, wait_status

pytestmark = pytest.mark.e2e
NAME = "pg-to-16"
MIGRATION = migration(NAME, "test", "16")


def test_missing_extension_in_target_image_blocks_until_fixed(cluster: Kubectl, operator: str, ns: str) -> None:
    deploy_source(cluster, ns)
    psql(cluster, ns, "CREATE DATABASE shop")
    psql(cluster, ns, "CREATE EXTENSION hstore; CREATE TABLE items (id int PRIMARY KEY, attrs hstore); "
                      "INSERT INTO items VALUES (1, 'colour=>blue')", "shop")
    cluster.apply(MIGRATION, ns)

    obj = wait_status(cluster, ns, NAME, "blocked by the check",
                      lambda o: condition(o, "PreflightPassed").get("reason") == "PreflightBlocked", timeout=600)
    assert phase(obj) == "Checking"
    assert condition(obj, "Stalled")["status"] == "True"
    assert "hstore" in condition(obj, "PreflightPassed")["message"]
    blockers = [f for f in obj["status"]["findings"] if f["severity"] == "blocker"]
    assert blockers and all("hstore" in f["object"] or "hstore" in f["message"] for f in blockers), blockers
    assert any("shop" in f["object"] for f in blockers) and all(f.get("hint") for f in blockers)
    events = cluster.run("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={NAME}",
                         "-o", "jsonpath={range .items[*]}{.type} {.reason}{'\\n'}{end}")
    assert "Warning PreflightBlocker" in events
    assert not cluster.run("-n", ns, "get", "job", f"{NAME}-copy", "--ignore-not-found", "-o", "name")

    # The way forward: fix the source; the next check passes, no new Migration needed.
    psql(cluster, ns, "DROP TABLE items; DROP EXTENSION hstore", "shop")
    obj = wait_status(cluster, ns, NAME, "Ready after the fix", lambda o: phase(o) == "Ready", timeout=600)
    assert condition(obj, "PreflightPassed")["status"] == "True"
    assert condition(obj, "CopyVerified")["status"] == "True"
    assert obj["status"]["sourceVersion"] == "15"
