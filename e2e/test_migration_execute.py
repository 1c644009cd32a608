"""Scenario: execute 15 -> 18 under continuous writes, with the operator killed mid-switchover.

Steps:
  1. a PostgreSQL 15 source (examples/source-pg15.yaml) with two databases, and an application
     committing numbered rows through the Service `pg` the whole time (e2e/workload.py);
  2. a Migration mode=execute, strategy logical, switchover Manual: it copies the schema,
     replicates, and waits for approval once caught up;
  3. a fault made for real: a session on the new server holds a lock on the written table, so
     the final catch-up cannot finish; the switchover is approved, the source gets fenced, and
     the operator pod is killed (force) in the middle of it;
  4. the fresh operator pod unfences the source (the Service never moved): the application
     writes to the 15 server again, the Migration waits for approval again;
  5. the lock is gone, the switchover is approved again and completes: the Service selects the
     18 server, the write interruption is in status, the Migration is locked (a spec edit is
     refused by the apiserver), the old StatefulSet is at 0 replicas with its volume kept;
  6. every row the application saw acknowledged is on the 18 server; sequences moved.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .conftest import OPERATOR_NAMESPACE, Kubectl
from .workload import (
    OPERATOR_SELECTOR,
    condition,
    deploy_source,
    mig,
    migration,
    phase,
    psql,
    psql_via,
    start_writer,
    wait_status,
    writer_log,
)

pytestmark = pytest.mark.e2e
NAME = "pg-to-18"
APPROVE = "dbmigrate.dev/approve-switchover"
MIGRATION = migration(NAME, "execute", "18",
                      execute="{strategy: logical, switchover: Manual, maxWriteDowntime: 120s, retainSourceFor: 72h}")


def _awaiting_approval(obj: dict[str, object]) -> bool:
    c = condition(obj, "SwitchoverApproved")  # type: ignore[arg-type]
    return phase(obj) == "Replicating" and c.get("reason") == "AwaitingApproval"  # type: ignore[arg-type]


def _source_with_application(cluster: Kubectl, ns: str) -> str:
    password = deploy_source(cluster, ns)
    psql(cluster, ns, "CREATE DATABASE shop")
    psql(cluster, ns, "CREATE DATABASE crm")
    psql(cluster, ns, "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); "
                      "INSERT INTO orders (note) SELECT 'order ' || g FROM generate_series(1, 5000) g", "shop")
    psql(cluster, ns, "CREATE TABLE customers (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text); "
                      "INSERT INTO customers (name) SELECT 'Zoë ' || g FROM generate_series(1, 300) g", "crm")
    start_writer(cluster, ns, password)
    return password


def _owners(cluster: Kubectl, ns: str, statefulset: str) -> list[str]:
    """The uids of the StatefulSet's owners."""
    return cluster.run("-n", ns, "get", "sts", statefulset, "-o",
                       "jsonpath={.metadata.ownerReferences[*].uid}").split()


def _hold_lock(cluster: Kubectl, ns: str, pod: str) -> subprocess.Popen[bytes]:
    """A session on the new server holding a lock on the written table: the apply of the
    application's rows waits for it, so the final catch-up cannot finish (a real fault, no mock)."""
    locker = subprocess.Popen(
        [cluster.binary, "--kubeconfig", cluster.kubeconfig, "-n", ns, "exec", pod, "--", "env",
         "PGAPPNAME=e2e-lock", "psql", "-U", "postgres", "-d", "shop", "-c",
         "BEGIN; LOCK TABLE acks IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(900)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while psql(cluster, ns, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                            "WHERE c.relname = 'acks' AND l.mode = 'AccessExclusiveLock' AND l.granted",
               "shop", pod=pod) != "1":
        assert time.monotonic() < deadline, "the lock on the new server was never taken"
        time.sleep(0.5)
    return locker


def _release_lock(cluster: Kubectl, ns: str, pod: str, locker: subprocess.Popen[bytes]) -> None:
    psql(cluster, ns, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE application_name = 'e2e-lock'", pod=pod)
    locker.kill()


def test_execute_15_to_18_under_writes_survives_a_crash_mid_switchover(
        cluster: Kubectl, operator: str, ns: str) -> None:
    # 1. source, data, application
    password = _source_with_application(cluster, ns)

    # 2. the Migration; it replicates and waits for approval
    t_start = time.monotonic()
    cluster.apply(MIGRATION, ns)
    obj = wait_status(cluster, ns, NAME, "awaiting approval", _awaiting_approval, timeout=900)
    assert obj["status"]["strategy"] == "logical"
    assert obj["status"]["replication"]["initialSyncDone"] is True
    t_replicating = time.monotonic()
    assert cluster.run("-n", ns, "get", "svc", "pg", "-o", "jsonpath={.spec.selector.app}") == "pg"

    # 3. the catch-up cannot finish (a lock on the new server), approve, kill the operator mid-switchover
    target_pod = f"{NAME}-target-0"
    locker = _hold_lock(cluster, ns, target_pod)
    try:
        cluster.run("-n", ns, "annotate", "mig", NAME, f"{APPROVE}=true")
        wait_status(cluster, ns, NAME, "switching over",
                    lambda o: bool((o.get("status") or {}).get("switchover", {}).get("startedAt")), timeout=60)
        deadline = time.monotonic() + 30
        while psql(cluster, ns, "SHOW default_transaction_read_only") != "on":
            assert time.monotonic() < deadline, "the source was never fenced"
            time.sleep(0.2)
        cluster.run("-n", ns, "annotate", "mig", NAME, f"{APPROVE}-")
        # Released before the fence, so before the repoint: from the repoint on the new server is
        # production, and a deletion of the Migration (foreground, say) must not take it along.
        assert _owners(cluster, ns, f"{NAME}-target") == []
        ip = cluster.run("-n", OPERATOR_NAMESPACE, "get", "pod", "-l", OPERATOR_SELECTOR,
                         "-o", "jsonpath={.items[0].status.podIP}")
        sessions = f"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{ip}'"
        assert int(psql(cluster, ns, sessions)) > 0, "the operator holds no session on the fenced source"
        assert phase(mig(cluster, ns, NAME)) == "SwitchingOver"
        cluster.run("-n", OPERATOR_NAMESPACE, "delete", "pod", "-l", OPERATOR_SELECTOR, "--grace-period=0",
                    "--force", "--wait=true")
        t_killed = time.time()
        # A force delete removes the API object at once; the process dies a moment later. Its
        # sessions on the source end with it: only then is it really gone mid-switchover.
        deadline = time.monotonic() + 90
        while int(psql(cluster, ns, sessions)) > 0:
            assert time.monotonic() < deadline, "the killed operator's sessions never went away"
            time.sleep(0.2)
        # The switchover did not complete; the replacement pod may already be rolling it back.
        assert phase(mig(cluster, ns, NAME)) in ("SwitchingOver", "Replicating")
    finally:
        # The fault ends: the locking session goes (the operator is dead by now, or never fenced).
        _release_lock(cluster, ns, target_pod, locker)

    # 4. a fresh operator rolls back to replicating: the source is unfenced and takes writes again
    obj = wait_status(cluster, ns, NAME, "recovered and awaiting approval again",
                      lambda o: _awaiting_approval(o) and not (o["status"].get("switchover") or {}), timeout=300)
    events = cluster.run("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={NAME}",
                         "-o", "jsonpath={range .items[*]}{.reason}{'\\n'}{end}")
    assert "PointOfNoReturn" not in events and "SwitchoverRecovered" in events
    # The switchover did not go through: the new server is the Migration's again (and its volume
    # would go with it).
    assert _owners(cluster, ns, f"{NAME}-target") == [obj["metadata"]["uid"]]
    assert cluster.run("-n", ns, "get", "sts", f"{NAME}-target", "-o",
                       "jsonpath={.spec.persistentVolumeClaimRetentionPolicy.whenDeleted}") == "Delete"
    assert obj["status"].get("locked") is not True
    assert psql(cluster, ns, "SHOW default_transaction_read_only") == "off"
    assert cluster.run("-n", ns, "get", "svc", "pg", "-o", "jsonpath={.spec.selector.app}") == "pg"
    before = int(psql(cluster, ns, "SELECT count(*) FROM acks", "shop"))
    time.sleep(3)
    assert int(psql(cluster, ns, "SELECT count(*) FROM acks", "shop")) > before, "the source takes no writes"
    assert psql(cluster, ns, "SHOW server_version").startswith("15")

    # 5. approve again: the switchover completes
    t_approved = time.time()
    cluster.run("-n", ns, "annotate", "mig", NAME, f"{APPROVE}=true")
    obj = wait_status(cluster, ns, NAME, "Completed", lambda o: phase(o) == "Completed", timeout=300)
    t_done = time.monotonic()
    st = obj["status"]
    assert st["locked"] is True and condition(obj, "Ready")["status"] == "True"
    downtime = float(st["switchover"]["writeDowntimeSeconds"])
    assert 0 < downtime < 10, st["switchover"]
    assert st["switchover"]["previousSelector"] == {"app": "pg"}
    selector = json.loads(cluster.run("-n", ns, "get", "svc", "pg", "-o", "jsonpath={.spec.selector}"))
    assert selector["dbmigrate.dev/migration"] == NAME and selector["app.kubernetes.io/component"] == "target"
    assert psql_via(cluster, ns, "pg", password, "SHOW server_version").startswith("18")

    # Locked: the apiserver refuses a spec edit (what kubectl edit sends).
    edit = subprocess.run([cluster.binary, "--kubeconfig", cluster.kubeconfig, "-n", ns, "patch", "mig", NAME,
                           "--type", "merge", "-p", '{"spec":{"execute":{"retainSourceFor":"24h"}}}'],
                          capture_output=True, text=True, timeout=60)
    assert edit.returncode != 0 and "locked" in edit.stderr, edit.stderr
    # The old server: stopped, kept, its volume bound.
    assert cluster.run("-n", ns, "get", "sts", "pg", "-o", "jsonpath={.spec.replicas}") == "0"
    # ... and the operator's own Service to it is gone with it.
    assert not cluster.run("-n", ns, "get", "svc", f"{NAME}-source", "--ignore-not-found", "-o", "name")
    assert cluster.run("-n", ns, "get", "pvc", "data-pg-0", "-o", "jsonpath={.status.phase}") == "Bound"

    # 6. the application, now on 18: nothing it saw acknowledged is missing
    time.sleep(3)
    acked = writer_log(cluster, ns)  # read before the pod (and its log) goes; later rows only add
    cluster.run("-n", ns, "delete", "pod", "writer", "--grace-period=1", "--wait=true", timeout=120)
    rows = {int(n) for n in psql_via(cluster, ns, "pg", password, "SELECT n FROM acks", "shop").split()}
    missing = sorted(set(acked.acked) - rows)
    assert len(rows) > 100 and missing == [], f"acknowledged rows missing on the new server: {missing[:20]}"
    after_move = [n for n, t in acked.acked.items() if t > t_approved]
    assert after_move, "the application never wrote after the switchover"
    gap, gap_at = acked.longest_gap(after=t_approved - 1)
    # Sequences and identities continue on the new server (no duplicate key on the next insert).
    assert int(psql_via(cluster, ns, "pg", password,
                        "INSERT INTO orders (note) VALUES ('after') RETURNING id", "shop")) > 5000
    assert int(psql_via(cluster, ns, "pg", password,
                        "INSERT INTO customers (name) VALUES ('after') RETURNING id", "crm")) > 300
    print(json.dumps({"scenario": "execute 15->18", "statusWriteDowntimeSeconds": downtime,
                      "appLongestGapSeconds": round(gap, 3), "acknowledgedRows": len(acked.acked),
                      "missing": len(missing), "replicatingAfterSeconds": round(t_replicating - t_start, 1),
                      "completedAfterApprovalSeconds": round(t_done - t_replicating, 1),
                      "killedAt": t_killed}))
    assert gap < 15, f"the application could not write for {gap:.1f}s (from {gap_at})"
    print(cluster.run("-n", ns, "get", "mig", NAME))
    print(cluster.run("-n", ns, "describe", "mig", NAME))



def test_execute_that_cannot_catch_up_in_time_fails_with_the_source_serving(
        cluster: Kubectl, operator: str, ns: str) -> None:
    """maxWriteDowntime 5s and a catch-up held back by a lock on the new server: the operator
    unfences the source and fails cleanly; the application writes to the 15 server as before,
    no replication object is left on it, the Service never moved, nothing is locked."""
    _source_with_application(cluster, ns)
    name = "pg-abort"
    cluster.apply(MIGRATION.replace(NAME, name).replace("maxWriteDowntime: 120s", "maxWriteDowntime: 5s"), ns)
    wait_status(cluster, ns, name, "awaiting approval", _awaiting_approval, timeout=900)
    target_pod = f"{name}-target-0"
    locker = _hold_lock(cluster, ns, target_pod)
    try:
        t_approved = time.time()
        cluster.run("-n", ns, "annotate", "mig", name, f"{APPROVE}=true")
        obj = wait_status(cluster, ns, name, "Failed", lambda o: phase(o) == "Failed", timeout=120, fail_phases=())
    finally:
        _release_lock(cluster, ns, target_pod, locker)
    st = obj["status"]
    assert condition(obj, "Stalled")["reason"] == "SwitchoverAborted" and st.get("locked") is not True
    assert "unfenced" in st["message"] and "maxWriteDowntime" in condition(obj, "Reconciling")["message"]
    # Terminal: the replication objects are removed (retried until done), and nothing starts again
    # (the approval annotation is still there).
    wait_status(cluster, ns, name, "the source restored",
                lambda o: bool(o["status"].get("switchover", {}).get("sourceRestored")), timeout=90, fail_phases=())
    time.sleep(12)  # more than one resync period
    obj = mig(cluster, ns, name)
    assert phase(obj) == "Failed" and not obj["status"]["switchover"].get("startedAt")
    events = cluster.run("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}",
                         "-o", "jsonpath={range .items[*]}{.type} {.reason}{'\\n'}{end}")
    assert "Warning SwitchoverAborted" in events and "PointOfNoReturn" not in events
    assert _owners(cluster, ns, f"{name}-target") == [obj["metadata"]["uid"]]  # released, then given back
    # The source, as before: writable, its Service unchanged, no slot or publication left.
    assert psql(cluster, ns, "SHOW default_transaction_read_only") == "off"
    assert cluster.run("-n", ns, "get", "svc", "pg", "-o", "jsonpath={.spec.selector}") == '{"app":"pg"}'
    assert psql(cluster, ns, "SELECT count(*) FROM pg_replication_slots") == "0"
    assert psql(cluster, ns, "SELECT count(*) FROM pg_publication", "shop") == "0"
    before = int(psql(cluster, ns, "SELECT count(*) FROM acks", "shop"))
    time.sleep(3)
    assert int(psql(cluster, ns, "SELECT count(*) FROM acks", "shop")) > before
    log = writer_log(cluster, ns)
    gap, _ = log.longest_gap(after=t_approved - 1)
    print(json.dumps({"scenario": "execute aborted", "appLongestGapSeconds": round(gap, 3)}))
    assert gap < 20, f"the application could not write for {gap:.1f}s"
