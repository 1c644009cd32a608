"""docs/argocd-health.lua against status objects the operator itself wrote on a real apiserver
(the same interpreter path as tests/unit/test_argocd_health.py: Debian's Lua)."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from ..unit.argocd_lua import health
from . import sources
from .conftest import GROUP, PLURAL, VERSION, OperatorProcess, wait_for
from .manifests import migration

pytestmark = pytest.mark.integration


def _get(api: kubernetes.client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name)
    return obj


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def _create(api: kubernetes.client.ApiClient, ns: str, doc: dict[str, Any]) -> None:
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)


def test_missing_source_is_degraded(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                    namespace: str) -> None:
    _create(api, namespace, migration("m1"))
    obj = wait_for(lambda: (o := _get(api, namespace, "m1")) and _cond(o, "Stalled").get("status") == "True" and o,
                   timeout=60, what="Stalled=True")
    status, message = health(obj)
    assert status == "Degraded"
    assert "StatefulSet 'pg' not found" in message


def test_resolved_source_is_progressing(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                        namespace: str) -> None:
    sources.create(api, namespace, sources.statefulset(), sources.service(), sources.secret())
    _create(api, namespace, migration("m1"))

    def working() -> dict[str, Any] | None:
        o = _get(api, namespace, "m1")
        st = o.get("status") or {}
        return o if st.get("phase") in ("Checking", "Provisioning") and \
            _cond(o, "Reconciling").get("status") == "True" else None
    obj = wait_for(working, timeout=60, what="phase Checking/Provisioning")
    status, message = health(obj)
    assert status == "Progressing"
    assert message == _cond(obj, "Reconciling")["message"]


def test_not_newer_target_is_degraded(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                      namespace: str) -> None:
    sources.create(api, namespace, sources.statefulset(image="postgres:17"), sources.service(), sources.secret())
    _create(api, namespace, migration("m1"))
    obj = wait_for(lambda: (o := _get(api, namespace, "m1")) and (o.get("status") or {}).get("phase") == "Failed"
                   and o, timeout=60, what="phase Failed")
    status, message = health(obj)
    assert status == "Degraded" and message


def test_unobserved_spec_is_progressing(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                        namespace: str) -> None:
    """A real status that lags its spec (what Argo sees right after a sync changed the spec)."""
    _create(api, namespace, migration("m1"))
    obj = wait_for(lambda: (o := _get(api, namespace, "m1")) and (o.get("status") or {}).get("observedGeneration")
                   and o, timeout=60, what="observed")
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert health(obj) == ("Progressing", f"Waiting for the dbmigrate operator to observe generation "
                                          f"{obj['metadata']['generation']}")
