"""Reading a Job's outcome (kube.read_job) on the real apiserver + controller-manager: the
Job controller makes the pods, the test plays the kubelet (it writes their status)."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import pytest

from dbmigrate import kube

from .conftest import wait_for

pytestmark = pytest.mark.integration


def _job(name: str, backoff_limit: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "smoke", "image": "postgres:17"}]}}}}


def _fail_pod(core: Any, ns: str, job_uid: str, message: str | None, name: str = "m1-smoke") -> None:
    pod = wait_for(lambda: [p for p in core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
                            if any(o.uid == job_uid for o in p.metadata.owner_references or [])
                            and (p.status.phase or "Pending") not in ("Failed", "Succeeded")],
                   what="the Job's pod")[0]
    term: dict[str, Any] = {"exitCode": 1, "reason": "Error", **({"message": message} if message else {})}
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Failed", "containerStatuses": [{
            "name": "smoke", "image": "postgres:17", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": term}}]}})


def _failed(batch: Any, ns: str, name: str) -> bool:
    st = batch.read_namespaced_job(name, ns).status
    return any(c.type == "Failed" and c.status == "True" for c in st.conditions or [])


def test_a_job_created_again_under_its_name_is_not_read_from_the_old_ones_pods(
        api: kubernetes.client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A smoke test run again (its failed Job deleted, then created anew) must report its own
    run: the old Job's pod can outlive it, with the same job-name label and the old output."""
    ns = namespace
    monkeypatch.setattr(kube, "_client", api)
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)

    old = batch.create_namespaced_job(ns, _job("m1-smoke"))
    _fail_pod(core, ns, old.metadata.uid, '{"output": "ERROR: relation \\"orders\\" does not exist"}')
    wait_for(lambda: _failed(batch, ns, "m1-smoke"), what="the first run failed")
    seen = asyncio.run(kube.read_job(ns, "m1-smoke"))
    assert seen is not None and seen.failed and seen.result == {
        "output": 'ERROR: relation "orders" does not exist'}

    # Deleted the way that leaves the pod behind; then the operator creates the Job again.
    batch.delete_namespaced_job("m1-smoke", ns, propagation_policy="Orphan")
    wait_for(lambda: not [j for j in batch.list_namespaced_job(ns).items if j.metadata.name == "m1-smoke"],
             what="the old Job gone")
    new = batch.create_namespaced_job(ns, _job("m1-smoke"))
    assert len(core.list_namespaced_pod(ns, label_selector="job-name=m1-smoke").items) >= 1

    # The new run fails without leaving a message (killed, say): nothing to show from it, and
    # above all not the old run's output.
    _fail_pod(core, ns, new.metadata.uid, None)
    wait_for(lambda: _failed(batch, ns, "m1-smoke"), what="the second run failed")
    again = asyncio.run(kube.read_job(ns, "m1-smoke"))
    assert again is not None and again.failed
    assert again.result is None, again.result
    assert len(core.list_namespaced_pod(ns, label_selector="job-name=m1-smoke").items) == 2


def test_a_job_retrying_after_a_failed_attempt_tells_what_that_attempt_said(
        api: kubernetes.client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy Job's backoff retries a failed attempt: meanwhile the operator shows why it
    failed (e.g. a source without room for the copy), not just "copying 0%"."""
    ns = namespace
    monkeypatch.setattr(kube, "_client", api)
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    job = batch.create_namespaced_job(ns, _job("m1-copy", backoff_limit=3))
    first = asyncio.run(kube.read_job(ns, "m1-copy"))
    assert first is not None and first.last_attempt is None and first.retrying == ""
    refused = '{"ok":false,"error":"TooFewConnections: the source accepts 2 more connections"}'
    _fail_pod(core, ns, job.metadata.uid, refused, name="m1-copy")
    # The controller counts the failure and starts the next attempt; the Job is not failed.
    seen = wait_for(lambda: (lambda j: j if j is not None and j.last_attempt else None)(
        asyncio.run(kube.read_job(ns, "m1-copy"))), what="the failed attempt read")
    assert not seen.failed and seen.retrying == "TooFewConnections: the source accepts 2 more connections"
