"""Least privilege, checked statically: the operator's ClusterRole (as the chart renders it) grants
exactly what the code uses — every Kubernetes API method kube.py touches, plus what kopf needs for
the handlers handlers.py registers — nothing missing, nothing extra, no wildcards.

How the code's needs are derived (no hand-kept list to forget):
  * kube.py: every `kubernetes.client.<X>Api(...)` receiver (assigned to a name or used inline) and
    every method taken from it; the client's own generated code gives the method's REST path
    (group, resource, subresource), the method's prefix gives the verb (read_ -> get, ...).
    CustomObjectsApi paths take group/plural from the call's arguments (constants in api.py).
  * kopf: handlers on the Migration resource -> list + watch (the watch stream) and patch
    (finalizer, progress kept in status -> status patch); cluster-wide discovery -> CRDs list +
    watch; kopf's own Events only when settings.posting stays enabled; peering per the chart.
  * resources.py: ownerReferences with blockOwnerDeletion -> update on migrations/finalizers.
The helm binary renders the chart (no cluster needed)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from dbmigrate import api as dbapi

from .chart_helpers import find, render

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "operator" / "dbmigrate"
Perm = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

VERB_PREFIXES = [("read_", "get"), ("list_", "list"), ("create_", "create"), ("patch_", "patch"),
                 ("replace_", "update"), ("delete_collection_", "deletecollection"), ("delete_", "delete")]
PATH = re.compile(r"'(/apis?/[^']+)'")


def _verb(method: str) -> str:
    for prefix, verb in VERB_PREFIXES:
        if method.startswith(prefix):
            return verb
    raise AssertionError(f"kube.py uses {method}: teach this test its verb")


def _resource_of(api_class: str, method: str, call: ast.Call | None) -> tuple[str, str]:
    cls = getattr(kubernetes.client, api_class)
    # The generated client keeps the REST path in `_<method>_serialize` (older releases: in
    # `<method>_with_http_info`).
    impl = getattr(cls, f"_{method}_serialize", None) or getattr(cls, f"{method}_with_http_info")
    src = inspect.getsource(impl)
    (path,) = set(PATH.findall(src))
    parts = path.strip("/").split("/")
    if parts[0] == "api":  # /api/v1/...
        group, rest = "", parts[2:]
    else:  # /apis/<group>/<version>/...
        group, rest = parts[1], parts[3:]
    if rest[:2] == ["namespaces", "{namespace}"]:
        rest = rest[2:]
    resource = rest[0]
    sub = rest[2] if len(rest) > 2 else None
    if group == "{group}" or resource == "{plural}":
        assert call is not None, f"{method} used without a call: cannot tell its group/plural"
        args = [_const(a) for a in call.args]
        group, resource = args[0], args[3] if "namespaced" in method else args[2]
    return group, f"{resource}/{sub}" if sub else resource


def _const(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(getattr(dbapi, node.id, None), str):
        return str(getattr(dbapi, node.id))
    return "?"


def _api_class(node: ast.expr, names: dict[str, str]) -> str | None:
    """`kubernetes.client.XApi(...)` or a name bound to one."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.endswith("Api") \
            and ast.unparse(node.func.value) == "kubernetes.client":
        return node.func.attr
    return None


def code_permissions() -> set[Perm]:
    tree = ast.parse((PKG / "kube.py").read_text())
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            cls = _api_class(node.value, {})
            if cls and cls != "ApiClient":
                names[node.targets[0].id] = cls
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    perms: set[Perm] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            cls = _api_class(node.value, names)
            if cls and cls != "ApiClient" and not node.attr.startswith("_"):
                group, resource = _resource_of(cls, node.attr, calls.get(id(node)))
                perms.add((group, resource, _verb(node.attr)))
                if "watch.Watch" in ast.unparse(tree) and node.attr.startswith("list_"):
                    perms.add((group, resource, "watch"))
    return perms


def kopf_permissions(peering: str | None) -> set[Perm]:
    handlers_src = (PKG / "handlers.py").read_text()
    perms: set[Perm] = set()
    if re.search(r"@kopf\.(on\.\w+|timer|daemon)\(GROUP, VERSION, PLURAL", handlers_src):
        g, p = dbapi.GROUP, dbapi.PLURAL
        perms |= {(g, p, "list"), (g, p, "watch"), (g, p, "patch")}
        if "StatusProgressStorage" in handlers_src or "StatusDiffBaseStorage" in handlers_src:
            perms.add((g, f"{p}/status", "patch"))
    # Cluster-wide kopf discovers resources through the CRDs (and keeps watching them).
    perms |= {("apiextensions.k8s.io", "customresourcedefinitions", "list"),
              ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}
    if "settings.posting.enabled = False" not in handlers_src:
        perms.add(("", "events", "create"))
    if peering:
        perms |= {("kopf.dev", peering, v) for v in ("list", "watch", "patch")}
    return perms


def owner_permissions() -> set[Perm]:
    src = "\n".join(p.read_text() for p in PKG.glob("*.py"))
    if re.search(r"[\"']blockOwnerDeletion[\"']\s*:\s*True", src):
        return {(dbapi.GROUP, f"{dbapi.PLURAL}/finalizers", "update")}
    return set()


def role_permissions(rules: list[dict[str, list[str]]]) -> set[Perm]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def _operator_role(values: dict[str, object] | None = None) -> dict[str, Any]:
    roles = [r for r in find(render(values), "ClusterRole") + find(render(values), "Role")
             if not r["metadata"]["name"].endswith(("-editor", "-viewer"))]
    return roles[0]


def test_scanner_sees_what_kube_py_does() -> None:
    """The scanner itself, on calls known to be in kube.py (guards against a scanner that finds nothing)."""
    perms = code_permissions()
    assert ("apps", "statefulsets", "get") in perms  # apps.read_namespaced_stateful_set
    assert ("", "secrets", "get") in perms
    assert (dbapi.GROUP, f"{dbapi.PLURAL}/status", "patch") in perms  # patch_namespaced_custom_object_status
    assert ("", "events", "create") in perms
    # Calls the scanner cannot attribute to a resource must not sneak in.
    src = (PKG / "kube.py").read_text()
    for opaque in ("call_api(", "kubernetes.dynamic", "DynamicClient", "request("):
        assert opaque not in src, f"kube.py uses {opaque}: extend this test's scanner"


@pytest.mark.parametrize("peering", [True, False])
def test_cluster_role_is_exactly_what_the_code_uses(peering: bool) -> None:
    role = _operator_role({"peering": {"enabled": peering}})
    granted = role_permissions(role["rules"])
    needed = code_permissions() | kopf_permissions("clusterkopfpeerings" if peering else None) | owner_permissions()
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
    missing = sorted(needed - granted)
    extra = sorted(granted - needed)
    assert (missing, extra) == ([], []), (
        f"\nmissing from charts/dbmigrate/templates/_helpers.tpl (dbmigrate.rules): {missing}"
        f"\ngranted but unused by operator/dbmigrate (remove, or use it in kube.py): {extra}")


def test_namespaced_roles_grant_the_same_with_namespaced_peering() -> None:
    cluster = role_permissions(_operator_role()["rules"])
    role = _operator_role({"watchNamespaces": ["a"]})
    assert role["kind"] == "Role"
    namespaced = role_permissions(role["rules"])
    swap = {("kopf.dev", "clusterkopfpeerings", v) for v in ("list", "watch", "patch")}
    assert namespaced == (cluster - swap) | {("kopf.dev", "kopfpeerings", v) for v in ("list", "watch", "patch")}


def test_only_kube_py_imports_the_client() -> None:
    """The scan covers every caller: no other module of the operator imports kubernetes."""
    for path in PKG.rglob("*.py"):
        if path.name == "kube.py":
            continue
        mod = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(mod) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(mod) if isinstance(n, ast.ImportFrom)}
        assert "kubernetes" not in imported, path


def test_dbmigrate_api_constants_are_what_the_crd_serves() -> None:
    mod = importlib.import_module("dbmigrate.api")
    crd = next(d for d in render(include_crds=True) if d["kind"] == "CustomResourceDefinition"
               and d["spec"]["group"] == mod.GROUP)
    assert crd["spec"]["names"]["plural"] == mod.PLURAL
