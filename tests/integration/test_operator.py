"""The operator (as its own process, with the chart's RBAC) resolves the source and reports
clear conditions; it keeps a finalizer while the Migration lives and removes it on delete."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from . import sources
from .conftest import GROUP, PLURAL, VERSION, OperatorProcess, wait_for
from .manifests import migration

pytestmark = pytest.mark.integration


def _co(api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


def _get(api: kubernetes.client.ApiClient, ns: str, name: str = "m1") -> dict[str, Any]:
    obj: dict[str, Any] = _co(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return obj


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def _apply(api: kubernetes.client.ApiClient, ns: str, doc: dict[str, Any]) -> None:
    _co(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)


def _wait_reason(api: kubernetes.client.ApiClient, ns: str, type_: str, reason: str,
                 name: str = "m1") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _get(api, ns, name)
        c = _cond(obj, type_)
        return obj if c and c["reason"] == reason else None
    result: dict[str, Any] = wait_for(check, timeout=40, what=f"{type_} reason {reason}")
    return result


def _events(api: kubernetes.client.ApiClient, ns: str) -> list[Any]:
    return list(kubernetes.client.CoreV1Api(api).list_namespaced_event(ns).items)


def test_missing_source_reports_every_problem(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                              namespace: str) -> None:
    _apply(api, namespace, migration())
    obj = _wait_reason(api, namespace, "SourceResolved", "SourceStatefulSetNotFound")
    msg = _cond(obj, "SourceResolved")["message"]  # type: ignore[index]
    # One describe shows everything to fix, with the names to fix it.
    assert "StatefulSet 'pg' not found" in msg
    assert "Service 'pg' not found" in msg
    assert "Secret 'pg-admin' not found" in msg
    assert obj["status"]["phase"] == "Pending"
    assert _cond(obj, "Ready")["status"] == "False"  # type: ignore[index]
    assert _cond(obj, "Stalled")["status"] == "True"  # type: ignore[index]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    ev = wait_for(lambda: [e for e in _events(api, namespace) if e.reason == "SourceStatefulSetNotFound"],
                  what="warning event")
    assert ev[0].type == "Warning"
    assert ev[0].involved_object.name == "m1"


def test_incomplete_secret_and_wrong_selector(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                              namespace: str) -> None:
    sources.create(api, namespace, sources.statefulset(), sources.service(selector={"app": "other"}),
                   sources.secret(keys=("username",)))
    _apply(api, namespace, migration())
    obj = _wait_reason(api, namespace, "SourceResolved", "SourceServiceSelectorMismatch")
    msg = _cond(obj, "SourceResolved")["message"]  # type: ignore[index]
    assert "does not select the pods of StatefulSet 'pg'" in msg
    assert "Secret 'pg-admin' lacks the key(s) 'password' (it has: username)" in msg
    assert "value-of" not in str(obj)  # secret values never reach status


def test_valid_source_resolves_and_fixing_later_is_picked_up(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    sources.create(api, namespace, sources.service(), sources.secret())
    _apply(api, namespace, migration())
    _wait_reason(api, namespace, "SourceResolved", "SourceStatefulSetNotFound")
    # The user fixes the cluster; the periodic reconcile notices without any edit of the Migration.
    sources.create(api, namespace, sources.statefulset(image="docker.io/library/postgres:15.6-bookworm"))
    obj = _wait_reason(api, namespace, "SourceResolved", "SourceResolved")
    st = obj["status"]
    assert st["sourceVersion"] == "15"
    assert st["sourceImage"] == "docker.io/library/postgres:15.6-bookworm"
    assert st["phase"] in ("Provisioning", "Checking")
    assert _cond(obj, "Stalled") is None
    assert _cond(obj, "Reconciling")["status"] == "True"  # type: ignore[index]
    assert _cond(obj, "Ready")["status"] == "False"  # type: ignore[index]
    # Events are posted right after the status write they describe: wait for them.
    wanted = {"SourceStatefulSetNotFound", "SourceResolved", "PhasePending", "PhaseProvisioning"}
    wait_for(lambda: wanted <= {e.reason for e in _events(api, namespace)}, what=f"events {wanted}")


def test_target_not_newer_fails_permanently(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                            namespace: str) -> None:
    sources.create(api, namespace, sources.statefulset(image="postgres:17"), sources.service(), sources.secret())
    _apply(api, namespace, migration(target={"version": "17"}))
    obj = _wait_reason(api, namespace, "Ready", "TargetNotNewer")
    assert obj["status"]["phase"] == "Failed"
    assert "not newer than the source's PostgreSQL 17" in obj["status"]["message"]


def test_unknown_version_asks_for_spec_source_version(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    sources.create(api, namespace, sources.statefulset(image="registry.local/db:latest"),
                   sources.service(), sources.secret())
    _apply(api, namespace, migration())
    obj = _wait_reason(api, namespace, "SourceResolved", "SourceVersionUnknown")
    assert "set spec.source.version" in _cond(obj, "SourceResolved")["message"]  # type: ignore[index]
    # The same source with the version given explicitly resolves (once m1 no longer holds the source).
    _co(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1")
    _apply(api, namespace, migration("m2", source={
        "statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "pg-admin", "version": "16"}))
    obj = _wait_reason(api, namespace, "SourceResolved", "SourceResolved", name="m2")
    assert obj["status"]["sourceVersion"] == "16"


def test_finalizer_added_and_removed_on_delete(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                               namespace: str) -> None:
    _apply(api, namespace, migration())
    wait_for(lambda: "dbmigrate.dev/finalizer" in (_get(api, namespace)["metadata"].get("finalizers") or []),
             what="finalizer")
    _co(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1")

    def gone() -> bool:
        try:
            _get(api, namespace)
        except ApiException as e:
            return e.status == 404
        return False
    wait_for(gone, what="Migration deleted")


def test_operator_writes_nothing_but_status_and_finalizer(
        operator: OperatorProcess, api: kubernetes.client.ApiClient, namespace: str) -> None:
    """GitOps sees no drift: spec, labels and annotations stay exactly as applied."""
    doc = migration()
    doc["metadata"]["labels"] = {"team": "a"}
    _apply(api, namespace, doc)
    obj = _wait_reason(api, namespace, "SourceResolved", "SourceStatefulSetNotFound")
    assert obj["metadata"].get("annotations") in (None, {})
    assert obj["metadata"]["labels"] == {"team": "a"}
    assert obj["metadata"]["generation"] == 1


def test_operator_log_has_no_permission_errors(operator: OperatorProcess) -> None:
    """Runs last in this module: the chart's RBAC sufficed for everything above."""
    log = operator.tail(100000)
    # RBAC denials read 'is forbidden: User "system:serviceaccount:..." cannot ...'.
    denied = [line for line in log.splitlines() if "forbidden: User" in line]
    assert denied == [], denied[:5]
    assert operator.proc is not None and operator.proc.poll() is None, "operator died:\n" + log[-3000:]
