"""Execute mode on the real apiserver + controller-manager. Where a database would act (the
pre-flight result, the engine's switchover) the test writes what it would have produced; the
operator's own steps (Jobs, finalize, lock, release of the new server, stopping the old one)
run for real against the API with the chart's RBAC."""

from __future__ import annotations

import base64
import time
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from . import sources
from .conftest import GROUP, PLURAL, VERSION, OperatorProcess, wait_for
from .manifests import migration
from .test_provisioning import _pod_ready, _read, _status, _wait_phase

pytestmark = pytest.mark.integration

TARGET_LABELS = {"app.kubernetes.io/managed-by": "dbmigrate", "app.kubernetes.io/name": "postgresql",
                 "app.kubernetes.io/component": "target", "dbmigrate.dev/migration": "m1"}


def _pass_preflight(api: kubernetes.client.ApiClient, ns: str, until: Any) -> Any:
    """Write the passed check (re-applied until `until()` holds: a check in flight may overwrite it)."""
    co = kubernetes.client.CustomObjectsApi(api)
    for _ in range(6):
        st = _status(api, ns)
        gen = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")["metadata"]["generation"]
        conds = [c for c in st.get("conditions", []) if c["type"] != "PreflightPassed"] + [{
            "type": "PreflightPassed", "status": "True", "reason": "PreflightPassed", "message": "ok",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": gen}]
        co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {"conditions": conds}})
        try:
            return wait_for(until, timeout=8, what="the step after the check")
        except AssertionError:
            continue
    raise AssertionError("the operator never moved past the check")


def test_execute_to_completed_locks_and_keeps_the_new_server(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    ns = namespace
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    batch, co = kubernetes.client.BatchV1Api(api), kubernetes.client.CustomObjectsApi(api)
    _execute_past_the_check(api, ns)
    job = batch.read_namespaced_job("m1-schema", ns)
    c = job.spec.template.spec.containers[0]
    assert c.command[3] == "schema" and c.image == "dbmigrate-worker:18"
    # Execute reaches the old server through a Service of its own, which the repoint never moves.
    assert {e.name: e.value for e in c.env}["SOURCE_HOST"] == f"m1-source.{ns}.svc"
    via = core.read_namespaced_service("m1-source", ns)
    assert via.spec.selector == {"app": "pg"} and via.spec.ports[0].port == 5432
    assert via.metadata.owner_references[0].name == "m1" and via.metadata.owner_references[0].controller
    # The new server takes the source's login: applications keep their credentials after the move.
    login = core.read_namespaced_secret("m1-target-credentials", ns).data
    assert base64.b64decode(login["password"]).decode() == "value-of-password"
    assert base64.b64decode(login["username"]).decode() == "value-of-username"
    st = _wait_phase(api, ns, "Copying")
    assert st["strategy"] == "logical" and st["target"]["provisionedFor"] == "execute"

    # Stand-in for the engine's switchover: the Service was repointed and the instant recorded.
    core.patch_namespaced_service("pg", ns, [{"op": "replace", "path": "/spec/selector", "value": TARGET_LABELS}])
    co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {
        "phase": "SwitchingOver", "locked": True, "switchover": {
            "startedAt": "2026-01-01T00:00:00Z", "previousSelector": {"app": "pg"},
            "pointOfNoReturnAt": "2026-01-01T00:00:01Z", "writeDowntimeSeconds": 0.7}}})

    st = _wait_phase(api, ns, "Completed", timeout=60)
    assert st["locked"] is True
    assert st["switchover"]["retainSourceUntil"] and st["switchover"]["previousSelector"] == {"app": "pg"}
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Completed"
    # The old server is stopped and kept; its volume template is untouched.
    src = apps.read_namespaced_stateful_set("pg", ns)
    assert src.spec.replicas == 0 and src.spec.volume_claim_templates[0].metadata.name == "data"
    # The operator's Service to the old server went with it (deletion is asynchronous: Background).
    wait_for(lambda: not [s for s in core.list_namespaced_service(ns).items if s.metadata.name == "m1-source"],
             what="m1-source deleted")
    # The new server no longer belongs to the Migration, and keeps its volume if ever deleted.
    tgt = apps.read_namespaced_stateful_set("m1-target", ns)
    assert not tgt.metadata.owner_references
    assert tgt.spec.persistent_volume_claim_retention_policy.when_deleted == "Retain"
    for read in (lambda: core.read_namespaced_service("m1-target", ns),
                 lambda: core.read_namespaced_secret("m1-target-credentials", ns)):
        assert not read().metadata.owner_references

    # Locked: the apiserver refuses any spec change, whoever asks.
    obj = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")
    obj["spec"]["execute"]["retainSourceFor"] = "24h"
    with pytest.raises(ApiException) as err:
        co.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1", obj)
    assert err.value.status == 422 and "locked" in err.value.body

    # Deleting the Migration leaves the new server running.
    co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")
    wait_for(lambda: _read(lambda: co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")) is None,
             what="Migration gone")
    assert apps.read_namespaced_stateful_set("m1-target", ns).metadata.deletion_timestamp is None


def test_second_migration_of_the_same_source_waits(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                                   namespace: str) -> None:
    ns = namespace
    co = kubernetes.client.CustomObjectsApi(api)
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, migration("first"))
    wait_for(lambda: co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "first").get("status"),
             what="first reconciled")
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, migration("second", target={"version": "18"}))

    def blocked() -> dict[str, Any] | None:
        st = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "second").get("status") or {}
        c = next((c for c in st.get("conditions", []) if c["type"] == "Blocked"), None)
        return c if c and c["status"] == "True" else None

    c = wait_for(blocked, what="Blocked condition")
    assert "Migration 'first'" in c["message"] and "StatefulSet 'pg'" in c["message"]
    assert _read(lambda: kubernetes.client.AppsV1Api(api).read_namespaced_stateful_set("second-target", ns)) is None
    co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "first")
    wait_for(lambda: _read(lambda: kubernetes.client.AppsV1Api(api).read_namespaced_stateful_set(
        "second-target", ns)), what="second proceeds once the first is gone")


def test_operator_killed_mid_provisioning_resumes_without_duplicates(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """kill -9 at a phase boundary; a fresh operator finishes from what is in the cluster."""
    ns = namespace
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    co = kubernetes.client.CustomObjectsApi(api)
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, migration())
    wait_for(lambda: _read(lambda: apps.read_namespaced_stateful_set("m1-target", ns)), what="target sts")
    secret_before = core.read_namespaced_secret("m1-target-credentials", ns).data
    operator.stop(kill=True)
    # While the operator is down the world moves on: the target pod becomes ready.
    _pod_ready(core, ns, "m1-target-0")
    operator.start()
    operator.wait_ready()
    _wait_phase(api, ns, "Checking")
    assert [s.metadata.name for s in apps.list_namespaced_stateful_set(ns).items
            if s.metadata.name.startswith("m1")] == ["m1-target"]
    assert core.read_namespaced_secret("m1-target-credentials", ns).data == secret_before
    svcs = sorted(s.metadata.name for s in core.list_namespaced_service(ns).items)
    assert svcs == ["m1-target", "m1-target-hl", "pg"]


def test_manual_switchover_waits_for_the_approval_annotation(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """spec.execute.switchover=Manual holds before the write interruption; annotating the
    Migration (what a panel's "switch over now" button does) lets it start at once."""
    ns = namespace
    core, co = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, migration(
        mode="execute", target={"version": "18"}, execute={"strategy": "dump", "switchover": "Manual"}))
    _pod_ready(core, ns, "m1-target-0")
    _wait_phase(api, ns, "Checking")

    def approval() -> dict[str, Any] | None:
        st = _status(api, ns)
        return next((c for c in st.get("conditions", []) if c["type"] == "SwitchoverApproved"), None)

    c = _pass_preflight(api, ns, approval)
    assert c["status"] == "False" and c["reason"] == "AwaitingApproval"
    assert "kubectl annotate migration m1 dbmigrate.dev/approve-switchover=true" in c["message"]
    assert not (_status(api, ns).get("switchover") or {}).get("fencedAt")  # nothing fenced while waiting
    # Events are posted after the status is written: wait for this one.
    wait_for(lambda: "AwaitingApproval" in {e.reason for e in core.list_namespaced_event(
        ns, field_selector="involvedObject.name=m1").items}, timeout=20, what="the AwaitingApproval event")

    co.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1", {"metadata": {"annotations": {
        "dbmigrate.dev/approve-switchover": "true"}}})
    # Approved: the dump strategy fences the source next (recorded before it acts).
    st = wait_for(lambda: (s := _status(api, ns)).get("switchover", {}).get("fencedAt") and s, timeout=20,
                  what="the fence after approval")
    assert next(c for c in st["conditions"] if c["type"] == "SwitchoverApproved")["status"] == "True"
    # This tier has no database: the fence fails, and is retried every second. The copy never
    # starts on a source whose fence is not confirmed (it would take writes the copy misses).
    batch = kubernetes.client.BatchV1Api(api)
    for _ in range(6):
        time.sleep(1)
        assert _read(lambda: batch.read_namespaced_job("m1-copy", ns)) is None
        st = _status(api, ns)
        assert st["phase"] == "SwitchingOver" and not st["switchover"].get("fenceConfirmedAt")
    assert next(c for c in st["conditions"] if c["type"] == "Reconciling")["reason"] in ("Fencing", "Retrying")


def _execute_past_the_check(api: kubernetes.client.ApiClient, ns: str) -> tuple[Any, Any]:
    """An execute Migration of a source, with its target up and the check passed (the schema
    Job exists). Returns (CustomObjectsApi, CoreV1Api)."""
    batch, co = kubernetes.client.BatchV1Api(api), kubernetes.client.CustomObjectsApi(api)
    core = kubernetes.client.CoreV1Api(api)
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                       migration(mode="execute", target={"version": "18"}))
    _pod_ready(core, ns, "m1-target-0")
    _wait_phase(api, ns, "Checking")
    _pass_preflight(api, ns, lambda: _read(lambda: batch.read_namespaced_job("m1-schema", ns)))
    return co, core


def test_switchover_interrupted_before_the_repoint_is_rolled_back(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """A status that says a switchover started, with the Service still on the source (what a
    crash mid-switchover leaves): the operator unfences and replicates again, and the stored
    status really loses the started switchover (a merge patch must null the nested keys). The
    switchover had released the new server (it does, before it fences): it belongs to the
    Migration again, volume policy included."""
    ns = namespace
    apps = kubernetes.client.AppsV1Api(api)
    co, core = _execute_past_the_check(api, ns)
    uid = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")["metadata"]["uid"]
    released = [{"op": "replace", "path": "/metadata/ownerReferences", "value": []}]
    apps.patch_namespaced_stateful_set("m1-target", ns, [
        *released, {"op": "replace", "path": "/spec/persistentVolumeClaimRetentionPolicy",
                    "value": {"whenDeleted": "Retain", "whenScaled": "Retain"}}])
    core.patch_namespaced_secret("m1-target-credentials", ns, released)
    co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {
        "phase": "SwitchingOver", "switchover": {"startedAt": "2026-01-01T00:00:00Z",
                                                 "previousSelector": {"app": "pg"}}}})
    st = wait_for(lambda: (s := _status(api, ns)).get("phase") == "Replicating" and s, timeout=30,
                  what="the rollback to Replicating")
    assert next(c for c in st["conditions"] if c["type"] == "Reconciling")["reason"] in (
        "SwitchoverRecovered", "StartingReplication", "Retrying")
    assert not st.get("switchover") and st.get("locked") is not True
    assert core.read_namespaced_service("pg", ns).spec.selector == {"app": "pg"}
    # The status is written before the recovery acts: wait for it.
    sts = wait_for(lambda: (s := apps.read_namespaced_stateful_set("m1-target", ns)).metadata.owner_references
                   and s, timeout=20, what="the new server given back to the Migration")
    assert [(r.uid, r.controller) for r in sts.metadata.owner_references] == [(uid, True)]
    assert sts.spec.persistent_volume_claim_retention_policy.when_deleted == "Delete"
    secret = wait_for(lambda: (s := core.read_namespaced_secret("m1-target-credentials", ns)).metadata.owner_references
                      and s, timeout=20, what="the Secret given back")
    assert [r.uid for r in secret.metadata.owner_references] == [uid]


def test_an_aborted_execute_stays_failed(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """After an abort (recorded as the engine's switchover would), later reconciles never start
    replicating or fencing again: the stored status keeps the abort (the CRD declares it)."""
    ns = namespace
    co, _ = _execute_past_the_check(api, ns)
    co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {
        "phase": "Failed", "message": "switchover aborted before the point of no return (test)",
        "switchover": {"abortedAt": "2026-01-01T00:00:00Z", "sourceRestored": True}}})
    st = _status(api, ns)
    assert st["switchover"] == {"abortedAt": "2026-01-01T00:00:00Z", "sourceRestored": True}
    for _ in range(15):  # more than one resync period of the test operator
        st = _status(api, ns)
        assert st["phase"] == "Failed" and "test" in st["message"], st
        assert not (st.get("switchover") or {}).get("startedAt")
        time.sleep(1)


def test_deleting_a_migration_right_after_the_repoint_keeps_the_new_server(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """The Service already selects the new server but the operator went down before it recorded
    the point of no return; then the Migration is deleted (a GitOps prune, say). Its finalizer
    finishes the move instead of letting the garbage collector take the new server, which is the
    production server now. (Here the operator is stopped and started again, so that the deletion
    handler, not a reconcile, does it.)"""
    ns = namespace
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    co, _ = _execute_past_the_check(api, ns)
    operator.stop(kill=True)
    core.patch_namespaced_service("pg", ns, [{"op": "replace", "path": "/spec/selector", "value": TARGET_LABELS}])
    co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")  # held by the finalizer
    operator.start()
    operator.wait_ready()

    wait_for(lambda: _read(lambda: co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")) is None,
             timeout=60, what="the Migration to be gone")
    tgt = apps.read_namespaced_stateful_set("m1-target", ns)
    assert not tgt.metadata.owner_references and tgt.metadata.deletion_timestamp is None
    for read in (lambda: core.read_namespaced_service("m1-target", ns),
                 lambda: core.read_namespaced_secret("m1-target-credentials", ns)):
        assert not read().metadata.owner_references
    assert apps.read_namespaced_stateful_set("pg", ns).spec.replicas == 0
    assert core.read_namespaced_service("pg", ns).spec.selector == TARGET_LABELS
    time.sleep(3)  # a garbage collector acting late would have acted by now
    assert _read(lambda: apps.read_namespaced_stateful_set("m1-target", ns)) is not None


def test_a_dump_copy_that_cannot_start_is_stopped_when_the_writes_are_given_back(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """Strategy dump, the source fenced (the test confirms the fence, as the engine would: this
    tier has no database), and the copy Job's pod cannot pull its image: the writes are given
    back (CopyCannotStart) and the Job is deleted, so that it never starts copying, later, from a
    source that serves writes again, for a Migration that failed."""
    ns = namespace
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    job = _dump_fenced_and_copying(api, ns)
    image = job.spec.template.spec.containers[0].image
    pod = wait_for(lambda: core.list_namespaced_pod(ns, label_selector="job-name=m1-copy").items, what="copy pod")[0]
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {"containerStatuses": [{
        "name": "copy", "image": image, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}}}]}})

    st = _wait_phase(api, ns, "Failed", timeout=30)
    assert next(c for c in st["conditions"] if c["type"] == "Stalled")["reason"] == "CopyCannotStart"
    assert st["switchover"]["abortedAt"]  # the unfence itself fails here (no database) and is retried
    wait_for(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "CopyCannotStart"
                      and "unfencing the source" in e.message], timeout=20, what="the CopyCannotStart event")
    wait_for(lambda: (lambda j: j is None or j.metadata.deletion_timestamp is not None)(
        _read(lambda: batch.read_namespaced_job("m1-copy", ns))), timeout=30, what="the copy Job stopped")


def test_a_dump_never_repoints_onto_a_new_server_being_deleted(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """Copied and verified, the repoint is next; but the garbage collector got to the new server
    first (a foreground deletion of the Migration; here a deletion held by a finalizer of the
    test's). The operator refuses to point the Service at it: applications stay on the source."""
    ns = namespace
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)

    def being_deleted() -> None:  # held by a finalizer (removed at the end)
        apps.patch_namespaced_stateful_set("m1-target", ns, {"metadata": {"finalizers": ["test.dbmigrate.dev/hold"]}})
        apps.delete_namespaced_stateful_set("m1-target", ns)

    try:
        job = _dump_fenced_and_copying(api, ns, before_copy=being_deleted)
        pod = wait_for(lambda: core.list_namespaced_pod(ns, label_selector="job-name=m1-copy").items,
                       what="copy pod")[0]
        result = '{"ok":true,"bytes":1000,"seconds":1.0,"databases":1,"diff":"no differences"}'
        core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
            "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "copy", "ready": False, "restartCount": 0,
                                   "image": job.spec.template.spec.containers[0].image, "imageID": "",
                                   "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                            "message": result}}}]}})
        def refused() -> dict[str, Any] | None:
            st = _status(api, ns)
            return st if "is being deleted" in st.get("message", "") else None

        st = wait_for(refused, timeout=60, what="the refused repoint")
        assert st["message"].startswith("repoint failed: the new server's StatefulSet m1-target is being deleted")
        for _ in range(5):  # retried, and refused, every second
            assert core.read_namespaced_service("pg", ns).spec.selector == {"app": "pg"}
            assert not (_status(api, ns).get("switchover") or {}).get("pointOfNoReturnAt")
            time.sleep(1)
    finally:
        apps.patch_namespaced_stateful_set("m1-target", ns, {"metadata": {"finalizers": None}})


def _dump_fenced_and_copying(api: kubernetes.client.ApiClient, ns: str,
                             before_copy: Any = None) -> Any:
    """An execute with strategy dump, fenced (the fence confirmed as the engine would: this tier
    has no database) and its copy Job created; returns the Job."""
    batch, co = kubernetes.client.BatchV1Api(api), kubernetes.client.CustomObjectsApi(api)
    core = kubernetes.client.CoreV1Api(api)
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, migration(
        mode="execute", target={"version": "18"}, execute={"strategy": "dump"}))
    _pod_ready(core, ns, "m1-target-0")
    _wait_phase(api, ns, "Checking")
    _pass_preflight(api, ns, lambda: (_status(api, ns).get("switchover") or {}).get("fencedAt"))
    if before_copy is not None:
        before_copy()

    def confirmed_and_copying() -> Any:
        if not (_status(api, ns).get("switchover") or {}).get("fenceConfirmedAt"):
            co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {
                "switchover": {"fenceConfirmedAt": "2026-01-01T00:00:00Z"}}})
        return _read(lambda: batch.read_namespaced_job("m1-copy", ns))

    return wait_for(confirmed_and_copying, timeout=30, what="the copy Job after the confirmed fence")
