"""The locally built postgres:<major> images honour the official image's contract.

Per major (skipped when that image is not in the node's image store):
  1. a pod with POSTGRES_PASSWORD/POSTGRES_USER/POSTGRES_DB initialises its data dir on first
     start and runs the server as uid 999, whether started as root or as uid 999 directly;
  2. a second pod logs in over TCP through a Service name with the password (scram-sha-256);
  3. the server is the expected major, and the database and role exist.
"""

from __future__ import annotations

import time

import pytest

from .conftest import Kubectl

SERVER = """
apiVersion: v1
kind: Pod
metadata: {{name: pg{major}, labels: {{app: pg{major}}}}}
spec:
  {security}
  containers:
  - name: postgres
    image: postgres:{major}
    imagePullPolicy: Never
    env:
    - {{name: POSTGRES_PASSWORD, value: s3cret-{major}}}
    - {{name: POSTGRES_USER, value: app}}
    - {{name: POSTGRES_DB, value: appdb}}
    readinessProbe:
      exec: {{command: [pg_isready, -U, app, -d, appdb, -h, 127.0.0.1]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: pg{major}}}
spec:
  selector: {{app: pg{major}}}
  ports: [{{port: 5432}}]
"""

CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: postgres:15, imagePullPolicy: Never, command: [sleep, infinity]}
"""


def _image_missing(k: Kubectl, ns: str, pod: str) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = k.json("-n", ns, "get", "pod", pod)["status"]
        for cs in st.get("containerStatuses", []):
            reason = cs.get("state", {}).get("waiting", {}).get("reason", "")
            if reason in ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"):
                return True
            if "running" in cs.get("state", {}):
                return False
        time.sleep(0.5)
    return False


SECURITY = {
    # started as root: the entrypoint prepares PGDATA and drops to 999 itself (docker run style)
    "root": "securityContext: {}",
    # started as 999 directly, as the operator's restricted pods and the examples run it
    "uid999": "securityContext: {runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, "
    "seccompProfile: {type: RuntimeDefault}}",
}


@pytest.mark.parametrize("start", ["root", "uid999"])
@pytest.mark.parametrize("major", ["15", "16", "17", "18"])
def test_postgres_image_contract(cluster: Kubectl, ns: str, major: str, start: str) -> None:
    cluster.apply(SERVER.format(major=major, security=SECURITY[start]), ns)
    cluster.apply(CLIENT, ns)
    if _image_missing(cluster, ns, f"pg{major}"):
        pytest.skip(f"postgres:{major} is not in the node's image store (images/build.sh postgres{major})")
    cluster.wait(f"pod/pg{major}", "condition=Ready", ns, timeout=180)
    cluster.wait("pod/client", "condition=Ready", ns, timeout=120)
    # 1. initdb ran and the server runs as uid 999
    logs = cluster.run("-n", ns, "logs", f"pg{major}")
    assert "PostgreSQL init process complete" in logs
    status = cluster.exec(ns, f"pg{major}", "cat", "/proc/1/status")
    assert any(line.split()[1:3] == ["999", "999"] for line in status.splitlines() if line.startswith("Uid:"))
    # 2. + 3. login over TCP through the Service name, as the configured role and database
    out = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = cluster.run(
            "-n",
            ns,
            "exec",
            "client",
            "--",
            "env",
            f"PGPASSWORD=s3cret-{major}",
            "PGCONNECT_TIMEOUT=5",
            "psql",
            "-h",
            f"pg{major}",
            "-U",
            "app",
            "-d",
            "appdb",
            "-tAc",
            "select current_user, current_database(), current_setting('server_version_num')::int / 10000",
            check=False,
        ).strip()
        if out:
            break
        time.sleep(1)
    assert out == f"app|appdb|{major}"
    # a wrong password is refused (the hba rule is not trust)
    bad = cluster.run(
        "-n",
        ns,
        "exec",
        "client",
        "--",
        "env",
        "PGPASSWORD=wrong",
        "psql",
        "-h",
        f"pg{major}",
        "-U",
        "app",
        "-d",
        "appdb",
        "-tAc",
        "select 1",
        check=False,
    )
    assert bad.strip() == ""


STATEFUL = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 10
      securityContext:
        runAsNonRoot: true
        runAsUser: 999
        fsGroup: 999
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: postgres
        image: postgres:{major}
        imagePullPolicy: Never
        env:
        - {{name: POSTGRES_PASSWORD, value: pw}}
        - {{name: PGDATA, value: /var/lib/postgresql/data/pgdata}}
        securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
        readinessProbe:
          exec: {{command: [pg_isready, -U, postgres, -h, 127.0.0.1]}}
          periodSeconds: 1
        volumeMounts: [{{name: data, mountPath: /var/lib/postgresql/data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"""


@pytest.mark.parametrize("major", ["15", "16", "17", "18"])
def test_postgres_survives_restart_on_fsgroup_volume(cluster: Kubectl, ns: str, major: str) -> None:
    """The way users run it (examples/source-pg15.yaml): uid 999, fsGroup, a volume from the
    default StorageClass. After a restart the kubelet has re-applied the fsGroup (g+rwx) to the
    data dir; the entrypoint must restore 0700 so the server starts again with the same data."""
    cluster.apply(STATEFUL.format(major=major), ns)
    if _image_missing(cluster, ns, "db-0"):
        pytest.skip(f"postgres:{major} is not in the node's image store")
    cluster.wait("pod/db-0", "condition=Ready", ns, timeout=180)
    cluster.exec(ns, "db-0", "psql", "-U", "postgres", "-c", "create table t as select 42 as answer")
    uid = cluster.json("-n", ns, "get", "pod", "db-0")["metadata"]["uid"]
    cluster.run("-n", ns, "delete", "pod", "db-0")
    deadline = time.monotonic() + 60
    while True:  # the StatefulSet recreates the pod under the same name
        pod = (
            cluster.json("-n", ns, "get", "pod", "db-0")
            if cluster.run("-n", ns, "get", "pod", "db-0", "-o", "name", check=False).strip()
            else None
        )
        if pod and pod["metadata"]["uid"] != uid:
            break
        assert time.monotonic() < deadline, "db-0 not recreated"
        time.sleep(0.5)
    cluster.wait("pod/db-0", "condition=Ready", ns, timeout=120)
    assert cluster.exec(ns, "db-0", "psql", "-U", "postgres", "-tAc", "select answer from t").strip() == "42"
