"""Scenario: a test migration 15 -> 18 survives a crash in the middle of its copy, then expires.

Steps:
  1. a PostgreSQL 15 source with a database large enough for the copy to take a while, and the
     application writing through the Service `pg` the whole time;
  2. a Migration mode=test to 18 with a 2 minute TTL and a smoke test (SQL from a ConfigMap);
  3. mid-copy (phase Copying, copy pod running, rows already on the target) the operator pod AND
     the copy pod are killed (force): the Job starts a new copy pod, which drops the half-copied
     database and copies it again; a fresh operator picks up from the cluster's state;
  4. Ready with the copy verified; exactly one of each child (no duplicates); an independent
     client reads the same rows through the address and Secret published in status; the
     smoke test passes;
  5. at the TTL the test server goes (phase Expired) and nothing else: the source and the
     application carry on.
"""

from __future__ import annotations

import time

import pytest

from .conftest import OPERATOR_NAMESPACE, Kubectl
from .workload import (
    OPERATOR_SELECTOR,
    condition,
    deploy_source,
    migration,
    phase,
    psql,
    psql_via,
    secret_value,
    start_writer,
    wait_status,
)

pytestmark = pytest.mark.e2e
NAME = "pg-test-18"
MIGRATION = migration(NAME, "test", "18",
                      test="{ttl: 2m, smokeTest: {sql: {configMapName: events-check, database: big}, timeout: 2m}}")
ROWS = 1_500_000
# The user's smoke test: every row is there (a division by zero fails it otherwise).
SMOKE = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: events-check}}
data:
  smoke.sql: "SELECT 1 / (count(*) = {ROWS})::int FROM events;"
"""
LABEL = f"dbmigrate.dev/migration={NAME}"


def _names(cluster: Kubectl, ns: str, kind: str) -> list[str]:
    return cluster.run("-n", ns, "get", kind, "-l", LABEL, "-o", "name").split()


def test_test_migration_to_18_resumes_after_a_crash_mid_copy_and_expires(
        cluster: Kubectl, operator: str, ns: str) -> None:
    # 1. source with ~200 MB in one database, and the application
    password = deploy_source(cluster, ns)
    psql(cluster, ns, "CREATE DATABASE shop")
    psql(cluster, ns, "CREATE DATABASE big")
    psql(cluster, ns, "CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload text); "
                      f"INSERT INTO events SELECT g, 'kind ' || (g % 17), repeat(md5(g::text), 3) "
                      f"FROM generate_series(1, {ROWS}) g", "big", )
    start_writer(cluster, ns, password)

    # 2. the Migration, with its smoke test
    cluster.apply(SMOKE, ns)
    cluster.apply(MIGRATION, ns)

    # 3. kill the operator and the copy pod once the copy is under way
    wait_status(cluster, ns, NAME, "copying", lambda o: phase(o) == "Copying", timeout=900)
    deadline = time.monotonic() + 300
    while True:
        pods = cluster.run("-n", ns, "get", "pods", "-l", f"job-name={NAME}-copy",
                           "--field-selector=status.phase=Running", "-o", "name").split()
        # template1: the copy drops and recreates the target's 'postgres' database meanwhile
        # (databases are copied side by side).
        copied = (psql(cluster, ns, "SELECT count(*) FROM pg_database WHERE datname = 'big'", "template1",
                       pod=f"{NAME}-target-0") == "1")
        if pods and copied:
            break
        assert time.monotonic() < deadline, "the copy pod never ran"
        time.sleep(0.5)
    assert phase(wait_status(cluster, ns, NAME, "still copying", lambda o: True)) == "Copying", \
        "the copy finished before the fault could be injected: make ROWS larger"
    cluster.run("-n", OPERATOR_NAMESPACE, "delete", "pod", "-l", OPERATOR_SELECTOR, "--grace-period=0", "--force")
    cluster.run("-n", ns, "delete", *pods, "--grace-period=0", "--force")

    # 4. Ready, verified, no duplicates, same data seen independently
    obj = wait_status(cluster, ns, NAME, "Ready", lambda o: phase(o) == "Ready", timeout=900)
    assert condition(obj, "CopyVerified")["status"] == "True"
    assert obj["status"]["progress"]["percent"] == 100
    job = cluster.json("-n", ns, "get", "job", f"{NAME}-copy")
    assert job["status"].get("failed", 0) >= 1 and job["status"]["succeeded"] == 1  # the killed pod, then the redo
    assert len(_names(cluster, ns, "statefulset")) == 1
    assert [j for j in _names(cluster, ns, "job") if j.endswith("-copy")] == [f"job.batch/{NAME}-copy"]
    assert len(_names(cluster, ns, "service")) == 2 and len(_names(cluster, ns, "secret")) == 1
    ts = obj["status"]["testServer"]
    tpw = secret_value(cluster, ns, ts["credentialsSecretName"], "password")
    got = psql_via(cluster, ns, ts["host"], tpw, "SELECT count(*), sum(length(payload)), "
                   "split_part(version(), ' ', 2) FROM events", "big")
    count, size, version = got.split("|")
    assert int(count) == ROWS and int(size) == ROWS * 96 and version.startswith("18")
    before = int(psql(cluster, ns, "SELECT count(*) FROM acks", "shop"))
    # The smoke test ran against the test server, in a restricted pod, and passed.
    obj = wait_status(cluster, ns, NAME, "the smoke test's result",
                      lambda o: condition(o, "SmokeTestPassed").get("status") in ("True", "False"), timeout=90)
    assert condition(obj, "SmokeTestPassed")["status"] == "True", condition(obj, "SmokeTestPassed")

    # 5. expiry: the test server goes, the source stays and keeps taking writes
    obj = wait_status(cluster, ns, NAME, "Expired", lambda o: phase(o) == "Expired", timeout=300)
    deadline = time.monotonic() + 120
    while any(_names(cluster, ns, k) for k in ("statefulset", "service", "secret", "job", "networkpolicy")):
        assert time.monotonic() < deadline, "children left after expiry"
        time.sleep(2)
    assert "testServer" not in obj["status"] or not obj["status"]["testServer"]
    assert cluster.run("-n", ns, "get", "sts", "pg", "-o", "jsonpath={.status.readyReplicas}") == "1"
    assert int(psql(cluster, ns, "SELECT count(*) FROM acks", "shop")) > before
