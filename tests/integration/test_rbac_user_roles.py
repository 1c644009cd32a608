"""The user-facing roles on the real control plane: the chart's dbmigrate-editor/-viewer aggregate
into the built-in edit/admin/view ClusterRoles, so a customer panel's ServiceAccount bound to `edit`
in its namespace can create Migrations and read their status, but cannot read another namespace's
Secrets, nor change a locked Migration, nor unlock it; `view` reads but cannot create."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from controlplane import ControlPlane

from .chart_helpers import apply_user_roles, client_as
from .conftest import GROUP, PLURAL, VERSION, wait_for
from .manifests import migration

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def user_roles(control_plane: ControlPlane) -> list[dict[str, Any]]:
    return apply_user_roles(control_plane)


@pytest.fixture
def other_namespace(api: kubernetes.client.ApiClient) -> Iterator[str]:
    name = f"t-other-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _client_as(cp: ControlPlane, api: kubernetes.client.ApiClient, ns: str, sa: str, clusterrole: str,
               tmp: Path) -> kubernetes.client.ApiClient:
    client: kubernetes.client.ApiClient = client_as(cp, api, ns, sa, clusterrole, tmp)
    return client


def _rules(cp: ControlPlane, name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = json.loads(cp.kubectl("get", "clusterrole", name, "-o", "json").stdout)["rules"]
    return rules


def _grants(rules: list[dict[str, Any]], resource: str, verb: str) -> bool:
    return any(GROUP in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r["verbs"]
               for r in rules)


def _status_code(fn: Any) -> int:
    try:
        fn()
    except ApiException as e:
        return int(e.status)
    return 200


def test_builtin_roles_aggregate_the_chart_roles(control_plane: ControlPlane,
                                                 user_roles: list[dict[str, Any]]) -> None:
    cp = control_plane
    assert {d["metadata"]["name"] for d in user_roles} == {"dbmigrate-editor", "dbmigrate-viewer"}
    for builtin in ("admin", "edit", "view"):
        label = f"aggregate-to-{builtin}"
        role = json.loads(cp.kubectl("get", "clusterrole", builtin, "-o", "json").stdout)
        selectors = role["aggregationRule"]["clusterRoleSelectors"]
        assert {"matchLabels": {f"rbac.authorization.k8s.io/{label}": "true"}} in selectors
    # The controller-manager's aggregation controller folds our rules into the built-in roles.
    for builtin in ("admin", "edit"):
        wait_for(lambda b=builtin: _grants(_rules(cp, b), "migrations", "create"), timeout=30,
                 what=f"{builtin} aggregates dbmigrate-editor")
    wait_for(lambda: _grants(_rules(cp, "view"), "migrations", "list"), timeout=30,
             what="view aggregates dbmigrate-viewer")
    assert not _grants(_rules(cp, "view"), "migrations", "create")
    for builtin in ("admin", "edit", "view"):
        assert not _grants(_rules(cp, builtin), "migrations/status", "patch")


def test_panel_bound_to_edit(control_plane: ControlPlane, api: kubernetes.client.ApiClient,
                             user_roles: list[dict[str, Any]], namespace: str, other_namespace: str,
                             tmp_path: Path) -> None:
    cp = control_plane
    wait_for(lambda: _grants(_rules(cp, "edit"), "migrations", "create"), timeout=30, what="aggregation")
    panel = kubernetes.client.CustomObjectsApi(_client_as(cp, api, namespace, "panel", "edit", tmp_path))
    admin = kubernetes.client.CustomObjectsApi(api)

    # Create a Migration and read its status (what a control panel does).
    panel.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, migration("m1"))
    admin.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "m1",
                                                {"status": {"message": "written by the operator"}})
    got = panel.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "m1")
    assert got["status"]["message"] == "written by the operator"
    assert panel.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]

    # Nothing outside its namespace: no Secrets, no Migrations.
    kubernetes.client.CoreV1Api(api).create_namespaced_secret(
        other_namespace, {"metadata": {"name": "pg-admin"}, "stringData": {"password": "s3cret"}})
    panel_core = kubernetes.client.CoreV1Api(panel.api_client)
    assert _status_code(lambda: panel_core.read_namespaced_secret("pg-admin", other_namespace)) == 403
    assert _status_code(lambda: panel.create_namespaced_custom_object(
        GROUP, VERSION, other_namespace, PLURAL, migration("m2"))) == 403

    # Status belongs to the operator: the panel can neither write nor unlock it.
    assert _status_code(lambda: panel.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "m1", {"status": {"phase": "Completed"}})) == 403

    # Its "Retry" button: a new value of the retry annotation, a plain patch of the Migration.
    retry = {"metadata": {"annotations": {"dbmigrate.dev/retry": "1"}}}
    got = panel.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1", retry)
    assert got["metadata"]["annotations"]["dbmigrate.dev/retry"] == "1"

    # Once locked (as the operator does after the point of no return), the spec is frozen for the panel too.
    admin.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "m1", {"status": {"locked": True}})
    with pytest.raises(ApiException) as e:
        panel.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1", {"spec": {"mode": "execute"}})
    assert e.value.status == 422 and "this Migration is locked" in e.value.body
    assert _status_code(lambda: panel.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "m1", {"status": {"locked": False}})) == 403
    assert admin.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1")["spec"]["mode"] == "test"


def test_viewer_reads_but_cannot_create(control_plane: ControlPlane, api: kubernetes.client.ApiClient,
                                        user_roles: list[dict[str, Any]], namespace: str, tmp_path: Path) -> None:
    cp = control_plane
    wait_for(lambda: _grants(_rules(cp, "view"), "migrations", "list"), timeout=30, what="aggregation")
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, migration("m1"))
    viewer = kubernetes.client.CustomObjectsApi(_client_as(cp, api, namespace, "viewer", "view", tmp_path))
    assert viewer.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1")["metadata"]["name"] == "m1"
    assert viewer.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "m1")
    assert len(viewer.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]) == 1
    assert _status_code(lambda: viewer.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, migration("m2"))) == 403
    assert _status_code(lambda: viewer.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "m1", {"spec": {"mode": "execute"}})) == 403
    assert _status_code(lambda: viewer.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m1")) == 403
