"""Scenario: execute 15 -> 18 with strategy dump (the offline move), under continuous writes.

Steps:
  1. a PostgreSQL 15 source with two databases and an application committing numbered rows
     through the Service `pg` (as in test_migration_execute.py);
  2. a Migration mode=execute, strategy dump, switchover Automatic: once the check passes, the
     new server restarts without WAL (the chart's dumpStrategy.walFreeLoadMinBytes is 0 here),
     the source is fenced (writes refused), a Job copies and verifies every database, the new
     server restarts with its WAL, and the Service moves to it;
  3. Completed and locked: the Service selects the 18 server, the write interruption is in
     status, the old StatefulSet is stopped with its volume kept;
  4. every row the application saw acknowledged is on the 18 server (what it wrote while fenced
     was refused, never lost), sequences and identities continue.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from .conftest import Kubectl
from .test_migration_execute import _source_with_application
from .workload import condition, migration, phase, psql, psql_via, wait_status, writer_log

pytestmark = pytest.mark.e2e
NAME = "pg-dump-18"


def test_execute_with_strategy_dump_moves_every_acknowledged_row(
        cluster: Kubectl, operator: str, ns: str) -> None:
    password = _source_with_application(cluster, ns)
    t_start = time.time()
    cluster.apply(migration(NAME, "execute", "18", execute="{strategy: dump, retainSourceFor: 72h}"), ns)
    obj = wait_status(cluster, ns, NAME, "Completed", lambda o: phase(o) == "Completed", timeout=900)
    st = obj["status"]
    assert st["strategy"] == "dump" and st["locked"] is True
    assert condition(obj, "Ready")["status"] == "True"
    downtime = float(st["switchover"]["writeDowntimeSeconds"])
    assert downtime > 0 and st["switchover"]["previousSelector"] == {"app": "pg"}
    events = cluster.run("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={NAME}",
                         "-o", "jsonpath={range .items[*]}{.reason}{'\\n'}{end}")
    assert "StrategyDump" in events and "PointOfNoReturn" in events
    selector = json.loads(cluster.run("-n", ns, "get", "svc", "pg", "-o", "jsonpath={.spec.selector}"))
    assert selector["dbmigrate.dev/migration"] == NAME
    assert psql_via(cluster, ns, "pg", password, "SHOW server_version").startswith("18")
    # The old server: stopped, kept.
    assert cluster.run("-n", ns, "get", "sts", "pg", "-o", "jsonpath={.spec.replicas}") == "0"
    # ... and the operator's own Service to it is gone with it.
    assert not cluster.run("-n", ns, "get", "svc", f"{NAME}-source", "--ignore-not-found", "-o", "name")
    assert cluster.run("-n", ns, "get", "pvc", "data-pg-0", "-o", "jsonpath={.status.phase}") == "Bound"

    # The application: nothing acknowledged is missing; it was refused while fenced, then wrote
    # to the new server.
    time.sleep(3)
    log = writer_log(cluster, ns)
    cluster.run("-n", ns, "delete", "pod", "writer", "--grace-period=1", "--wait=true", timeout=120)
    rows = {int(n) for n in psql_via(cluster, ns, "pg", password, "SELECT n FROM acks", "shop").split()}
    missing = sorted(set(log.acked) - rows)
    assert len(rows) > 100 and missing == [], f"acknowledged rows missing on the new server: {missing[:20]}"
    assert any(t > t_start for _, t, _ in log.errors), "no write was refused: the source was never fenced"
    gap, gap_at = log.longest_gap(after=t_start)
    assert [t for t in log.acked.values() if t > gap_at + gap], "the application never wrote after the move"
    assert int(psql_via(cluster, ns, "pg", password,
                        "INSERT INTO orders (note) VALUES ('after') RETURNING id", "shop")) > 5000
    assert int(psql_via(cluster, ns, "pg", password,
                        "INSERT INTO customers (name) VALUES ('after') RETURNING id", "crm")) > 300
    sw = st["switchover"]
    restart = (datetime.fromisoformat(sw["pointOfNoReturnAt"])
               - datetime.fromisoformat(sw["targetRestartedAt"])).total_seconds()
    print(json.dumps({"scenario": "execute dump 15->18", "statusWriteDowntimeSeconds": downtime,
                      "restartWithWalToRepointSeconds": restart, "appLongestGapSeconds": round(gap, 3),
                      "acknowledgedRows": len(log.acked), "refusedWrites": len(log.errors)}))
    # The new server loaded without WAL and went live with it: restarted after the fence, before
    # the repoint (its pod is that young), on wal_level=logical.
    assert sw["fencedAt"] <= sw["targetRestartedAt"] <= sw["pointOfNoReturnAt"], sw
    born = cluster.run("-n", ns, "get", "pod", f"{NAME}-target-0", "-o", "jsonpath={.metadata.creationTimestamp}")
    assert born >= sw["targetRestartedAt"], (born, sw)
    assert psql(cluster, ns, "SHOW wal_level", pod=f"{NAME}-target-0") == "logical"
