"""What the e2e scenarios share: the customer's source server, an application writing through
its Service, and reading a Migration's status. Only kubectl, like every e2e helper."""

from __future__ import annotations

import base64
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import Kubectl

REPO = Path(__file__).resolve().parent.parent
OPERATOR_SELECTOR = "app.kubernetes.io/name=dbmigrate"

# The application: commits numbered rows through the Service `pg`, one per transaction, and
# prints each number once its COMMIT was acknowledged. It holds one connection and reconnects
# after any error, as a real app's pool does. A retry after an ambiguous failure (the commit
# may have happened, the answer was lost) that meets the primary key counts as acknowledged.
WRITER = r"""
import os, sys, time
import psycopg
n, conn = 1, None
while True:
    try:
        if conn is None:
            conn = psycopg.connect(host="pg", dbname="shop", user="postgres", password=os.environ["PGPASSWORD"],
                                   autocommit=True, connect_timeout=3)
        conn.execute("INSERT INTO acks (n) VALUES (%s)", (n,))
        print(f"ok {n} {time.time():.3f}", flush=True)
        n += 1
    except psycopg.errors.UniqueViolation:
        print(f"ok {n} {time.time():.3f} (committed before the error)", flush=True)
        n += 1
    except Exception as e:
        print(f"err {n} {time.time():.3f} {type(e).__name__}", flush=True)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
        time.sleep(0.05)
    time.sleep(0.01)
"""


def deploy_source(cluster: Kubectl, ns: str) -> str:
    """examples/source-pg15.yaml as a customer runs it; returns the admin password."""
    cluster.apply((REPO / "examples/source-pg15.yaml").read_text().replace(
        "imagePullPolicy: IfNotPresent", "imagePullPolicy: Never"), ns)
    cluster.run("-n", ns, "rollout", "status", "statefulset/pg", "--timeout=300s", timeout=320)
    return secret_value(cluster, ns, "pg-admin", "password")


def secret_value(cluster: Kubectl, ns: str, secret: str, key: str) -> str:
    return base64.b64decode(cluster.run("-n", ns, "get", "secret", secret, "-o", f"jsonpath={{.data.{key}}}")).decode()


def psql(cluster: Kubectl, ns: str, sql: str, db: str = "postgres", pod: str = "pg-0") -> str:
    """SQL inside a server's pod (local socket)."""
    return cluster.exec(ns, pod, "psql", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql).strip()


def psql_via(cluster: Kubectl, ns: str, host: str, password: str, sql: str, db: str = "postgres",
             image: str = "postgres:18") -> str:
    """SQL from a fresh pod through a Service: what an application sees. (The pod's log is read
    after it ends: `kubectl run -i` can miss the output of a command that finishes quickly.)"""
    pod = f"q-{time.monotonic_ns() % 10**9}"
    cluster.run("-n", ns, "run", pod, f"--image={image}", "--image-pull-policy=Never", "--restart=Never",
                f"--env=PGPASSWORD={password}", "--command", "--",
                "psql", "-h", host, "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAtc", sql)
    try:
        deadline = time.monotonic() + 180
        while (state := cluster.run("-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}")) not in (
                "Succeeded", "Failed"):
            assert time.monotonic() < deadline, f"pod {pod} never finished"
            time.sleep(0.5)
        out = cluster.run("-n", ns, "logs", pod).strip()
        assert state == "Succeeded", f"psql via {host} failed: {out}"
        return out
    finally:
        cluster.run("-n", ns, "delete", "pod", pod, "--wait=false", check=False)


def start_writer(cluster: Kubectl, ns: str, password: str) -> None:
    psql(cluster, ns, "CREATE TABLE IF NOT EXISTS acks (n bigint PRIMARY KEY, at timestamptz DEFAULT now())",
         "shop")
    cluster.run("-n", ns, "run", "writer", "--image=dbmigrate-worker:18", "--image-pull-policy=Never",
                "--restart=Never", f"--env=PGPASSWORD={password}", "--command", "--", "python3", "-c", WRITER)
    cluster.wait("pod/writer", "condition=Ready", ns, timeout=120)


@dataclass(frozen=True)
class WriterLog:
    acked: dict[int, float]       # row number -> when its commit was acknowledged (epoch s)
    errors: list[tuple[int, float, str]]

    def longest_gap(self, after: float = 0.0) -> tuple[float, float]:
        """(seconds, start) of the longest stretch without an acknowledged commit."""
        times = sorted(t for t in self.acked.values() if t >= after)
        if len(times) < 2:
            return 0.0, after
        gap, start = max((b - a, a) for a, b in itertools.pairwise(times))
        return gap, start


def writer_log(cluster: Kubectl, ns: str) -> WriterLog:
    acked: dict[int, float] = {}
    errors: list[tuple[int, float, str]] = []
    for line in cluster.run("-n", ns, "logs", "writer", timeout=120).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "ok":
            acked[int(parts[1])] = float(parts[2])
        elif len(parts) >= 4 and parts[0] == "err":
            errors.append((int(parts[1]), float(parts[2]), parts[3]))
    return WriterLog(acked, errors)


def migration(name: str, mode: str, version: str, **settings: str) -> str:
    """A Migration of the source `pg` as a user writes it; settings: test=..., execute=...
    (flow mappings, e.g. execute="{strategy: logical}")."""
    extra = "".join(f"\n  {k}: {v}" for k, v in settings.items())
    return f"""
apiVersion: dbmigrate.dev/v1alpha1
kind: Migration
metadata:
  name: {name}
spec:
  mode: {mode}
  source: {{statefulSetName: pg, serviceName: pg, credentialsSecretName: pg-admin}}
  target: {{version: "{version}"}}{extra}
"""


def mig(cluster: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.run("-n", ns, "get", "mig", name, "-o", "json"))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_status(cluster: Kubectl, ns: str, name: str, what: str, pred: Any, timeout: float = 600,
                fail_phases: tuple[str, ...] = ("Failed",)) -> dict[str, Any]:
    """Poll the Migration until pred(obj) holds; fail early (with kubectl describe) on a failed phase."""
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = mig(cluster, ns, name)
        if pred(obj):
            return obj
        if (obj.get("status") or {}).get("phase") in fail_phases:
            break
        time.sleep(1)
    raise AssertionError(f"{name}: never {what}:\n" + cluster.run("-n", ns, "describe", "mig", name, check=False))


def phase(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase", ""))
