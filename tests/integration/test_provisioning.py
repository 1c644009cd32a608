"""Provisioning on the real apiserver + controller-manager: every child the operator creates,
field by field, in a namespace that enforces Pod Security "restricted"; then the test plays
the kubelet (marks the target pod Ready) and the operator moves on to the pre-flight check."""

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
    sources.create(api, ns, sources.statefulset(), sources.service(), sources.secret())
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
