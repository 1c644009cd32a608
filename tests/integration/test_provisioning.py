"""Provisioning on the real apiserver + controller-manager: every child the operator creates,
field by field, in a namespace that enforces Pod Security "restricted"; then the test plays
the kubelet (there is none here: it writes the pod's status) - first an image it cannot pull,
which stalls the Migration, then Ready - and the operator moves on to the pre-flight check."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes
import pytest

from . import sources
from .conftest import GROUP, OPERATOR_NS, PLURAL, VERSION, OperatorProcess, wait_for
from .manifests import migration

pytestmark = pytest.mark.integration


@pytest.fixture
def restricted_namespace(api: kubernetes.client.ApiClient, namespace: str) -> str:
    kubernetes.client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    return namespace


def _status(api: kubernetes.client.ApiClient, ns: str) -> dict[str, Any]:
    obj = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1")
    return dict(obj.get("status") or {})


def test_target_children_then_preflight(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                        restricted_namespace: str) -> None:
    ns = restricted_namespace
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    net = kubernetes.client.NetworkingV1Api(api)
    source_resources = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    sources.create(api, ns, sources.statefulset(resources=source_resources), sources.service(), sources.secret())
    mig = kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, migration(target={"version": "17", "storage": {"storageClassName": "fast"}}))
    uid = mig["metadata"]["uid"]

    sts = wait_for(lambda: _read(lambda: apps.read_namespaced_stateful_set("m1-target", ns)), what="target sts")
    # Field by field: image from the operator's map, restricted security, credentials by reference.
    owner = sts.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Migration", "m1", uid, True)
    assert sts.metadata.labels["dbmigrate.dev/migration"] == "m1"
    pod = sts.spec.template.spec
    c = pod.containers[0]
    assert c.image == "postgres:17"
    # No resources in the spec: the new server gets the source container's.
    assert (c.resources.requests, c.resources.limits) == (source_resources["requests"], source_resources["limits"])
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert c.security_context.allow_privilege_escalation is False and c.security_context.capabilities.drop == ["ALL"]
    pw_env = next(e for e in c.env if e.name == "POSTGRES_PASSWORD")
    assert pw_env.value is None and pw_env.value_from.secret_key_ref.name == "m1-target-credentials"
    vct = sts.spec.volume_claim_templates[0].spec
    assert vct.resources.requests["storage"] == "7Gi"  # 5Gi source + 25% headroom, rounded up
    assert vct.storage_class_name == "fast"

    secret = core.read_namespaced_secret("m1-target-credentials", ns)
    assert base64.b64decode(secret.data["username"]).decode() == "postgres"
    assert len(base64.b64decode(secret.data["password"])) >= 24
    svc = core.read_namespaced_service("m1-target", ns)
    assert svc.spec.selector == sts.spec.selector.match_labels and svc.spec.ports[0].port == 5432
    assert core.read_namespaced_service("m1-target-hl", ns).spec.cluster_ip == "None"
    np = net.read_namespaced_network_policy("m1-target", ns)
    peers = np.spec.ingress[0]._from
    assert peers[0].pod_selector.match_labels is None  # every pod of this namespace
    assert peers[1].namespace_selector.match_labels == {"kubernetes.io/metadata.name": OPERATOR_NS}

    # The StatefulSet controller created the pod: Pod Security "restricted" admitted it.
    pod_obj = wait_for(lambda: _read(lambda: core.read_namespaced_pod("m1-target-0", ns)), what="target pod")
    st = wait_for(lambda: (lambda s: s if any(c["type"] == "Reconciling" and c["reason"] == "TargetStarting"
                                              for c in s.get("conditions", [])) else None)(_status(api, ns)),
                  what="TargetStarting")
    assert st["phase"] == "Provisioning"

    # Play the kubelet of a node that cannot pull the image (e2e pulls a missing image for
    # real): the operator reads the pod, stalls with the kubelet's words, warns once.
    core.patch_namespaced_pod_status("m1-target-0", ns, {"status": {"containerStatuses": [{
        "name": "postgres", "image": "postgres:17", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "postgres:17"'}}}]}})
    st = wait_for(lambda: (lambda s: s if any(c["type"] == "Stalled" and c["reason"] == "TargetNotReady"
                                              for c in s.get("conditions", [])) else None)(_status(api, ns)),
                  what="Stalled TargetNotReady")
    assert st["phase"] == "Provisioning"
    assert st["message"] == ('the target server (PostgreSQL 17) cannot start: pod m1-target-0, container postgres: '
                             'ImagePullBackOff: Back-off pulling image "postgres:17"')
    wait_for(lambda: [e for e in core.list_namespaced_event(ns).items
                      if e.reason == "TargetNotReady" and e.type == "Warning"], what="TargetNotReady event")

    # Play the kubelet: the pod runs and is ready.
    core.patch_namespaced_pod_status("m1-target-0", ns, {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"},
                                           {"type": "ContainersReady", "status": "True"}]}})
    assert pod_obj.metadata.name == "m1-target-0"

    def preflight_ran() -> dict[str, Any] | None:
        s = _status(api, ns)
        c = next((c for c in s.get("conditions", []) if c["type"] == "PreflightPassed"), None)
        return s if c else None

    st = wait_for(preflight_ran, timeout=60, what="pre-flight attempt")
    # There is no DNS and no server here: the check reports why it cannot run, and retries.
    pf = next(c for c in st["conditions"] if c["type"] == "PreflightPassed")
    assert pf["status"] == "False" and pf["reason"] == "PreflightError"
    assert "m1-target" in pf["message"] or "pg." in pf["message"]
    assert st["phase"] == "Checking"
    assert "value-of-password" not in str(st)

    # Nothing was duplicated by the repeated reconciles.
    assert len([s for s in apps.list_namespaced_stateful_set(ns).items if s.metadata.name.startswith("m1")]) == 1
    assert core.read_namespaced_secret("m1-target-credentials", ns).data == secret.data


def _read(fn: Any) -> Any:
    try:
        return fn()
    except kubernetes.client.exceptions.ApiException as e:
        if e.status == 404:
            return None
        raise


def _wait_phase(api: kubernetes.client.ApiClient, ns: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(lambda: (lambda s: s if s.get("phase") == phase else None)(_status(api, ns)),
                                      timeout=timeout, what=f"phase {phase}")
    return result


def _pod_ready(core: kubernetes.client.CoreV1Api, ns: str, name: str) -> None:
    wait_for(lambda: _read(lambda: core.read_namespaced_pod(name, ns)), what=f"pod {name}")
    core.patch_namespaced_pod_status(name, ns, {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"},
                                           {"type": "ContainersReady", "status": "True"}]}})


def _to_copying(api: kubernetes.client.ApiClient, ns: str, **spec: Any) -> Any:
    """A Migration (``spec``: overrides of its spec) whose pre-flight check passed, up to its
    copy Job (returned)."""
    core = kubernetes.client.CoreV1Api(api)
    batch, co = kubernetes.client.BatchV1Api(api), kubernetes.client.CustomObjectsApi(api)
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
    co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, migration(**spec))
    _pod_ready(core, ns, "m1-target-0")
    _wait_phase(api, ns, "Checking")
    # Stand-in for a real server's check result (the engine's check is proven in the dataplane tier).
    # Re-applied until the Job appears: a check attempt already in flight may overwrite it once.
    def pass_preflight() -> Any:
        st = _status(api, ns)
        conds = [c for c in st["conditions"] if c["type"] != "PreflightPassed"] + [{
            "type": "PreflightPassed", "status": "True", "reason": "PreflightPassed", "message": "0 warning(s)",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]
        co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {
            "conditions": conds, "progress": {"bytesTotal": 1000, "bytesCopied": 0, "percent": 0, "display": "0%"}}})
        return wait_for(lambda: _read(lambda: batch.read_namespaced_job("m1-copy", ns)), timeout=8,
                        what="copy Job")

    job = None
    for _ in range(5):
        try:
            job = pass_preflight()
            break
        except AssertionError:
            continue
    assert job is not None, "the operator never created the copy Job"
    return job


def test_copy_job_ready_then_ttl_expiry(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                        namespace: str) -> None:
    """Where a database would answer, the test writes what it would have produced: the passed
    pre-flight condition, then the copy pod's exit and termination message."""
    ns = namespace
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    batch, co = kubernetes.client.BatchV1Api(api), kubernetes.client.CustomObjectsApi(api)
    job = _to_copying(api, ns)
    assert _wait_phase(api, ns, "Copying")["progress"]["bytesTotal"] == 1000
    # The Job, field by field: worker image, both logins by reference, restricted, owned.
    assert job.metadata.owner_references[0].name == "m1"
    c = job.spec.template.spec.containers[0]
    assert c.image == "dbmigrate-worker:17"
    assert c.command[:4] == ["python3", "-m", "dbmigrate.engines.postgres.jobmain", "copy-verify"]
    env = {e.name: e for e in c.env}
    assert env["SOURCE_HOST"].value == f"pg.{ns}.svc" and env["TARGET_HOST"].value == f"m1-target.{ns}.svc"
    assert env["SOURCE_PASSWORD"].value_from.secret_key_ref.name == "pg-admin"
    assert env["TARGET_PASSWORD"].value_from.secret_key_ref.name == "m1-target-credentials"
    assert all(e.value is None for k, e in env.items() if k.endswith(("USER", "PASSWORD")))
    assert c.security_context.allow_privilege_escalation is False
    # The operator's defaults (copyJob in the chart): requests for quota'd namespaces, no CPU limit.
    assert c.resources.requests == {"cpu": "500m", "memory": "256Mi"} and c.resources.limits == {"memory": "1Gi"}
    assert c.command[-2:] == ["--jobs", "2"]
    assert job.spec.template.spec.restart_policy == "Never"
    assert job.spec.pod_failure_policy.rules[0].on_exit_codes.values == [2]

    # Play a kubelet that cannot pull the worker image: the Job stays active for ever, so the
    # Migration says why (stalled, the kubelet's words, a hint), not "copying 0%".
    pod = wait_for(lambda: core.list_namespaced_pod(ns, label_selector="job-name=m1-copy").items, what="copy pod")[0]
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {"containerStatuses": [{
        "name": "copy", "image": c.image, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff",
                              "message": 'Back-off pulling image "dbmigrate-worker:17"'}}}]}})
    st = wait_for(lambda: (lambda s: s if any(c["type"] == "Stalled" and c["reason"] == "JobCannotStart"
                                              for c in s.get("conditions", [])) else None)(_status(api, ns)),
                  what="Stalled JobCannotStart")
    assert st["phase"] == "Copying" and "ImagePullBackOff" in st["message"] and "m1-copy" in st["message"]
    assert "worker image" in next(c for c in st["conditions"] if c["type"] == "Reconciling")["message"]

    _copy_succeeds(core, ns)
    st = _wait_phase(api, ns, "Ready")
    assert st["testServer"]["host"] == f"m1-target.{ns}.svc"
    assert st["testServer"]["credentialsSecretName"] == "m1-target-credentials"
    assert st["progress"]["percent"] == 100
    assert st["estimate"]["executeSeconds"] > 0
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "until" in ready["message"]
    ev = wait_for(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "TestServerReady"],
                  what="TestServerReady event")
    assert f"m1-target.{ns}.svc:5432" in ev[0].message

    # TTL: move the verification instant back a day; the operator removes the test server.
    conds = [dict(c, lastTransitionTime="2020-01-01T00:00:00Z") if c["type"] == "CopyVerified" else c
             for c in st["conditions"]]
    co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "m1", {"status": {"conditions": conds}})
    st = _wait_phase(api, ns, "Expired")
    assert "testServer" not in st
    wait_for(lambda: _read(lambda: apps.read_namespaced_stateful_set("m1-target", ns)) is None, what="sts gone")
    for read in (lambda: core.read_namespaced_service("m1-target", ns),
                 lambda: core.read_namespaced_secret("m1-target-credentials", ns),
                 lambda: batch.read_namespaced_job("m1-copy", ns)):
        wait_for(lambda read=read: _read(read) is None, what="child deleted")
    # The source is untouched.
    assert apps.read_namespaced_stateful_set("pg", ns).spec.replicas == 1
    assert core.read_namespaced_service("pg", ns).spec.selector == {"app": "pg"}
    assert core.read_namespaced_secret("pg-admin", ns).data


def test_retry_annotation_starts_a_failed_copy_again(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                                     namespace: str) -> None:
    """Someone who may edit the Migration but not its Jobs (a panel, GitOps) retries a failed
    copy with a new value of dbmigrate.dev/retry; the test plays the kubelet for the copy pod."""
    ns = namespace
    core = kubernetes.client.CoreV1Api(api)
    batch, co = kubernetes.client.BatchV1Api(api), kubernetes.client.CustomObjectsApi(api)
    first = _to_copying(api, ns)
    _wait_phase(api, ns, "Copying")
    pod = wait_for(lambda: [p for p in core.list_namespaced_pod(ns, label_selector="job-name=m1-copy").items
                            if p.metadata.owner_references[0].uid == first.metadata.uid], what="copy pod")[0]
    # Exit code 2: the worker's "do not retry" code, so the Job fails at once (podFailurePolicy).
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Failed", "containerStatuses": [{
            "name": "copy", "image": "dbmigrate-worker:17", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 2, "reason": "Error",
                                     "message": '{"ok":false,"error":"CommandFailed: pg_restore exited 1"}'}}}]}})
    st = _wait_phase(api, ns, "Failed")
    assert "pg_restore exited 1" in st["message"]
    hint = next(c for c in st["conditions"] if c["type"] == "Reconciling")["message"]
    assert "kubectl annotate migration m1 dbmigrate.dev/retry=<new value> --overwrite" in hint

    def annotate(value: str) -> None:
        co.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "m1",
                                          {"metadata": {"annotations": {"dbmigrate.dev/retry": value}}})

    def retried(value: str) -> Any:
        return (lambda r: r if r.get("request") == value else None)(_status(api, ns).get("retry") or {})

    annotate("1")
    record = wait_for(lambda: retried("1"), what="status.retry for '1'")
    assert record["result"] == "deleted Job m1-copy" and record["at"]
    second = wait_for(lambda: (lambda j: j if j is not None and j.metadata.uid != first.metadata.uid else None)(
        _read(lambda: batch.read_namespaced_job("m1-copy", ns))), timeout=60, what="the copy Job created again")
    assert second.metadata.owner_references[0].name == "m1"
    st = _wait_phase(api, ns, "Copying")
    assert st["retry"] == record  # the same value seen by later reconciles: acted on once
    ev = wait_for(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "Retrying"],
                  what="Retrying event")
    assert "starting the copy again (deleting the failed Job m1-copy)" in ev[0].message

    # Nothing has failed now: a new value is told so, and the running copy is left alone.
    annotate("2")
    assert wait_for(lambda: retried("2"), what="status.retry for '2'")["result"] == "nothing to retry"
    ev = wait_for(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "NothingToRetry"],
                  what="NothingToRetry event")
    assert "phase Copying" in ev[0].message
    assert batch.read_namespaced_job("m1-copy", ns).metadata.uid == second.metadata.uid


def _copy_succeeds(core: kubernetes.client.CoreV1Api, ns: str) -> None:
    """Play the kubelet: the copy pod exits 0 with its result."""
    pod = wait_for(lambda: core.list_namespaced_pod(ns, label_selector="job-name=m1-copy").items, what="copy pod")[0]
    result = '{"ok":true,"bytes":4200000,"seconds":7.5,"databases":3,"diff":"no differences"}'
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "copy", "ready": False, "restartCount": 0, "image": "dbmigrate-worker:17",
                               "imageID": "", "state": {"terminated": {
                                   "exitCode": 0, "reason": "Completed", "message": result}}}]}})


def test_smoke_test_that_cannot_start_says_why_then_passes(operator: OperatorProcess,
                                                           api: kubernetes.client.ApiClient,
                                                           namespace: str) -> None:
    """A smoke test from the user's pod template whose image cannot be pulled: the pod would
    wait until the test's timeout, so the Migration says why at once (SmokeTestCannotStart,
    the kubelet's words, a Warning Event). The test server stays Ready (the user may connect),
    but the test has not passed, so an execute's requireSuccessfulTest guardrail does not
    count it (no testPassedAt); once the pod runs and exits 0, it does. The test plays the
    kubelet."""
    ns = namespace
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    template = {"spec": {"containers": [{"name": "tests", "image": "registry.example/app-tests:1",
                                         "command": ["./run-tests"]}]}}
    _to_copying(api, ns, test={"smokeTest": {"job": {"template": template}}})
    _copy_succeeds(core, ns)
    job = wait_for(lambda: _read(lambda: batch.read_namespaced_job("m1-smoke", ns)), what="smoke Job")
    assert job.metadata.owner_references[0].name == "m1"
    c = job.spec.template.spec.containers[0]
    assert c.image == "registry.example/app-tests:1"
    assert {e.name for e in c.env} >= {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"}
    assert next(e for e in c.env if e.name == "PGPASSWORD").value_from.secret_key_ref.name == "m1-target-credentials"
    pod = wait_for(lambda: core.list_namespaced_pod(ns, label_selector="job-name=m1-smoke").items, what="smoke pod")[0]
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {"containerStatuses": [{
        "name": "tests", "image": c.image, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull",
                              "message": 'pull access denied for registry.example/app-tests'}}}]}})

    def smoke(reason: str) -> Any:
        st = _status(api, ns)
        found = [c for c in st.get("conditions", []) if c["type"] == "SmokeTestPassed" and c["reason"] == reason]
        return st if found else None

    st = wait_for(lambda: smoke("SmokeTestCannotStart"), what="SmokeTestCannotStart")
    c_smoke = next(c for c in st["conditions"] if c["type"] == "SmokeTestPassed")
    assert c_smoke["status"] == "Unknown"
    assert "ErrImagePull" in c_smoke["message"] and "spec.test.smokeTest" in c_smoke["message"]
    assert st["phase"] == "Ready" and "testPassedAt" not in st
    ev = wait_for(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "SmokeTestCannotStart"],
                  what="SmokeTestCannotStart event")
    assert ev[0].type == "Warning" and "cannot start" in ev[0].message

    # The image is fixed on the registry's side: the pod runs and exits 0.
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
        "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "tests", "ready": False, "restartCount": 0, "image": c.image, "imageID": "",
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}})
    st = wait_for(lambda: smoke("SmokeTestPassed"), what="SmokeTestPassed")
    assert next(c for c in st["conditions"] if c["type"] == "SmokeTestPassed")["status"] == "True"
    st = wait_for(lambda: (lambda s: s if s.get("testPassedAt") else None)(_status(api, ns)), what="testPassedAt")
    assert st["phase"] == "Ready" and st["testTargetVersion"] == "17"
