"""Scenario: a test migration 15 -> 17 of a live source, on the real cluster.

Steps:
  1. a PostgreSQL 15 StatefulSet (examples/source-pg15.yaml) with two databases of data, and a
     client pod writing to it continuously through its Service;
  2. a Migration mode=test to 17, applied like a user does (kubectl);
  3. it becomes Ready: progress 100%, the copy verified by the engine's Job; its smoke test,
     whose ConfigMap name has a typo, fails at once saying so; once the ConfigMap exists and
     the failed Job is deleted, it runs again and passes;
  4. an independent check: a pod logs in to the address from status.testServer with the
     published Secret and finds the same rows (a snapshot: at least what existed before);
  5. the source kept taking writes throughout, and still serves them through its Service;
  6. deleting the Migration removes the test server and nothing else.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Kubectl
from .workload import psql, psql_via

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def _status(cluster: Kubectl, ns: str, path: str) -> str:
    return cluster.run("-n", ns, "get", "mig", "pg-to-17", "-o", f"jsonpath={{{path}}}", check=False).strip()


def _smoke_test(cluster: Kubectl, ns: str, status: str, seconds: float) -> dict[str, Any]:
    """The SmokeTestPassed condition once it has ``status``, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    smoke: dict[str, Any] = {}
    while time.monotonic() < deadline:
        conds = cluster.json("-n", ns, "get", "mig", "pg-to-17")["status"]["conditions"]
        smoke = next((c for c in conds if c["type"] == "SmokeTestPassed"), {})
        if smoke.get("status") == status:
            break
        time.sleep(2)
    return smoke


def test_test_migration_to_17_is_ready_and_holds_the_data(cluster: Kubectl, operator: str, ns: str) -> None:
    # 1. the source, its data, and a writer going through the Service
    cluster.apply((REPO / "examples/source-pg15.yaml").read_text().replace("imagePullPolicy: IfNotPresent",
                                                                          "imagePullPolicy: Never"), ns)
    cluster.run("-n", ns, "rollout", "status", "statefulset/pg", "--timeout=300s", timeout=320)
    psql(cluster, ns, "CREATE DATABASE shop")
    psql(cluster, ns, "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); "
                       "INSERT INTO orders (note) SELECT 'order ' || g FROM generate_series(1, 5000) g", "shop")
    psql(cluster, ns, "CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    pw = cluster.run("-n", ns, "get", "secret", "pg-admin", "-o", "jsonpath={.data.password}")
    cluster.run("-n", ns, "run", "writer", "--image=postgres:15", "--image-pull-policy=Never", "--restart=Never",
                "--env=PGPASSWORD=" + base64.b64decode(pw).decode(), "--command", "--",
                "sh", "-c", "while true; do psql -h pg -U postgres -qc 'INSERT INTO ticks DEFAULT VALUES' "
                "|| true; sleep 0.2; done")
    cluster.wait("pod/writer", "condition=Ready", ns, timeout=120)

    # 2. the Migration, as a user applies it, with a smoke test whose ConfigMap name has a typo
    manifest = (REPO / "examples/migration-test.yaml").read_text()
    assert "    ttl: 24h\n" in manifest
    cluster.apply(manifest.replace("    ttl: 24h\n", "    ttl: 24h\n    smokeTest:\n"
                                   "      sql: {configMapName: orders-chek, database: shop}\n"), ns)

    # 3. Ready
    deadline = time.monotonic() + 900
    phase = ""
    while time.monotonic() < deadline:
        phase = _status(cluster, ns, ".status.phase")
        if phase in ("Ready", "Failed"):
            break
        time.sleep(3)
    assert phase == "Ready", cluster.run("-n", ns, "describe", "mig", "pg-to-17", check=False)
    assert _status(cluster, ns, ".status.progress.percent") == "100"
    assert _status(cluster, ns, ".status.sourceVersion") == "15"
    conds = cluster.json("-n", ns, "get", "mig", "pg-to-17")["status"]["conditions"]
    assert {c["type"]: c["status"] for c in conds}["CopyVerified"] == "True"
    # The test server got what the source has (the example's resources), not a bare container;
    # the copy Job ran with the chart's copyJob resources.
    def container(kind: str, name: str) -> dict[str, Any]:
        obj = cluster.json("-n", ns, "get", kind, name)
        return dict(obj["spec"]["template"]["spec"]["containers"][0])
    source_resources = container("statefulset", "pg")["resources"]
    assert source_resources["limits"] == {"memory": "1Gi"}
    assert container("statefulset", "pg-to-17-target")["resources"] == source_resources
    assert container("job", "pg-to-17-copy")["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}

    # 4. an independent look at the test server, with what status publishes
    host = _status(cluster, ns, ".status.testServer.host")
    assert _status(cluster, ns, ".status.testServer.port") == "5432"
    secret = _status(cluster, ns, ".status.testServer.credentialsSecretName")
    tpw = base64.b64decode(
        cluster.run("-n", ns, "get", "secret", secret, "-o", "jsonpath={.data.password}")).decode()
    row = psql_via(cluster, ns, host, tpw, "SELECT count(*), max(id), split_part(version(), ' ', 2) FROM orders",
                   "shop", image="postgres:17")
    count, max_id, version = row.split("|")
    assert (count, max_id) == ("5000", "5000") and version.startswith("17")

    # The smoke test fails at once and says why (not "running" until its timeout).
    smoke = _smoke_test(cluster, ns, "False", 120)
    assert smoke.get("reason") == "SmokeTestFailed", smoke
    assert 'ConfigMap "orders-chek" does not exist in this namespace' in smoke["message"], smoke
    assert "kubectl annotate migration pg-to-17 dbmigrate.dev/retry=<new value> --overwrite) or delete Job " \
        "pg-to-17-smoke" in smoke["message"], smoke
    assert _status(cluster, ns, ".status.phase") == "Ready"  # the test server stays, to investigate

    # The user creates the ConfigMap the Migration names and asks for a retry, as the message
    # says: the smoke test runs again, against the same test server, and passes (every row is there).
    cluster.apply('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: orders-chek}\ndata:\n'
                  '  smoke.sql: "SELECT 1 / (count(*) = 5000)::int FROM orders;"\n', ns)
    cluster.run("-n", ns, "annotate", "mig", "pg-to-17", "dbmigrate.dev/retry=configmap-fixed", "--overwrite")
    smoke = _smoke_test(cluster, ns, "True", 180)
    assert smoke.get("reason") == "SmokeTestPassed", smoke
    assert _status(cluster, ns, ".status.testPassedAt")
    assert _status(cluster, ns, ".status.retry.result") == "deleted Job pg-to-17-smoke"

    # 5. the source kept taking writes through its Service, and still does
    before = int(psql(cluster, ns, "SELECT count(*) FROM ticks"))
    time.sleep(3)
    assert int(psql(cluster, ns, "SELECT count(*) FROM ticks")) > before > 0
    assert psql(cluster, ns, "SHOW server_version").startswith("15")

    # 6. delete: the test server goes, the source stays
    cluster.run("-n", ns, "delete", "mig", "pg-to-17", "--wait=true", "--timeout=120s", timeout=150)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cluster.run("-n", ns, "get", "statefulset", "pg-to-17-target",
                                                      "--ignore-not-found", "-o", "name", check=False).strip():
        time.sleep(2)
    assert not cluster.run("-n", ns, "get", "statefulset", "pg-to-17-target", "--ignore-not-found", "-o", "name")
    assert cluster.run("-n", ns, "get", "statefulset", "pg", "-o", "jsonpath={.spec.replicas}") == "1"
