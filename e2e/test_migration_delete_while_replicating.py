"""Scenario: an execute is deleted while it replicates; the source is left exactly as it was.

A logical slot that outlives its Migration keeps every WAL segment of the source from then on,
until its disk is full: the deletion must not leave one behind.
  1. a PostgreSQL 15 source with a database `shop`;
  2. a Migration mode=execute, strategy logical, switchover Manual: it copies the schema,
     replicates, and waits for approval; the source now has a slot and a publication;
  3. the Migration is deleted (kubectl delete, as a GitOps prune would): its finalizer drops
     the subscription's slot and the publication before the object goes;
  4. the source has no dbmigrate slot or publication left, takes writes, its Service still
     selects it; the new server is garbage-collected.
"""

from __future__ import annotations

import pytest

from .conftest import Kubectl
from .workload import condition, deploy_source, migration, phase, psql, wait_status

pytestmark = pytest.mark.e2e
NAME = "pg-deleted"
MIGRATION = migration(NAME, "execute", "18", execute="{strategy: logical, switchover: Manual}")
SLOTS = "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'dbmigrate\\_%'"
PUBLICATIONS = "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'dbmigrate\\_%'"


def test_deleting_a_replicating_execute_drops_its_slot_and_publication(cluster: Kubectl, operator: str,
                                                                       ns: str) -> None:
    deploy_source(cluster, ns)
    psql(cluster, ns, "CREATE DATABASE shop")
    psql(cluster, ns, "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); "
                      "INSERT INTO orders (note) SELECT 'order ' || g FROM generate_series(1, 2000) g", "shop")
    cluster.apply(MIGRATION, ns)
    wait_status(cluster, ns, NAME, "waiting for approval, replicating",
                lambda o: phase(o) == "Replicating" and condition(o, "SwitchoverApproved").get("reason")
                == "AwaitingApproval", timeout=600)
    assert int(psql(cluster, ns, SLOTS, "shop")) >= 1 and int(psql(cluster, ns, PUBLICATIONS, "shop")) == 1

    cluster.run("-n", ns, "delete", "mig", NAME, "--wait=true", "--timeout=180s", timeout=190)

    for db in ("shop", "postgres"):
        assert psql(cluster, ns, SLOTS, db) == "0", f"a replication slot was left on the source ({db})"
        assert psql(cluster, ns, PUBLICATIONS, db) == "0", f"a publication was left on the source ({db})"
    assert psql(cluster, ns, "SHOW default_transaction_read_only") == "off"
    psql(cluster, ns, "INSERT INTO orders (note) VALUES ('after the deletion')", "shop")
    assert cluster.run("-n", ns, "get", "svc", "pg", "-o", "jsonpath={.spec.selector.app}") == "pg"
    cluster.run("-n", ns, "wait", "--for=delete", f"statefulset/{NAME}-target", "--timeout=120s", timeout=130,
                check=False)
    assert not cluster.run("-n", ns, "get", "statefulset", f"{NAME}-target", "--ignore-not-found", "-o", "name")
