"""docs/examples/panel.py (the code docs/panel-guide.md walks through), run as a customer panel's
ServiceAccount that holds nothing but the built-in `edit` role in its namespace, against the
operator on the real control plane."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes
import pytest

from controlplane import ControlPlane

from .chart_helpers import ROOT, apply_user_roles, client_as
from .conftest import GROUP, PLURAL, VERSION, OperatorProcess, wait_for

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "docs" / "examples" / "panel.py"


def _panel_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("panel_example", EXAMPLE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def panel_kubeconfig(control_plane: ControlPlane, api: kubernetes.client.ApiClient, namespace: str,
                     tmp_path: Path) -> Path:
    cp = control_plane
    apply_user_roles(cp)
    edit_rules = lambda: cp.kubectl("get", "clusterrole", "edit", "-o", "jsonpath={.rules}").stdout  # noqa: E731
    wait_for(lambda: "dbmigrate.dev" in edit_rules(), timeout=30, what="edit aggregates dbmigrate-editor")
    client_as(cp, api, namespace, "panel", "edit", tmp_path)
    return tmp_path / "panel.kubeconfig"


def _run(kubeconfig: Path, namespace: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--kubeconfig", str(kubeconfig), "-n", namespace, "--name", "m1",
         "--statefulset", "pg", "--service", "pg", "--secret", "pg-admin", "--timeout", "60", *extra],
        capture_output=True, text=True, timeout=120, check=False)


def test_example_follows_until_a_human_is_needed(operator: OperatorProcess, panel_kubeconfig: Path,
                                                 namespace: str) -> None:
    r = _run(panel_kubeconfig, namespace, "--version", "17")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"created Migration {namespace}/m1" in r.stdout
    assert "Stalled=True" in r.stdout and "StatefulSet 'pg' not found" in r.stdout


def test_example_shows_the_apiservers_message_for_bad_input(panel_kubeconfig: Path, namespace: str) -> None:
    r = _run(panel_kubeconfig, namespace, "--version", "19")
    assert r.returncode == 2
    assert r.stdout.startswith("rejected:") and "supported PostgreSQL major version" in r.stdout


def test_example_prints_the_test_server_address(operator: OperatorProcess, control_plane: ControlPlane,
                                                api: kubernetes.client.ApiClient, panel_kubeconfig: Path,
                                                namespace: str) -> None:
    panel = _panel_module()
    client = kubernetes.config.new_client_from_config(config_file=str(panel_kubeconfig))
    panel.create(client, namespace, panel.test_migration("m1", "pg", "pg", "pg-admin", "17"))
    # What the operator publishes once the copy is verified (written here as the operator would,
    # through the status subresource, since this control plane has no kubelet to run a server).
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "m1", {"status": {"testServer": {
            "host": f"m1-target.{namespace}.svc", "port": 5432, "credentialsSecretName": "m1-target-credentials",
            "expiresAt": "2030-01-01T00:00:00Z"}}})
    lines: list[str] = []
    assert panel.follow(client, namespace, "m1", timeout=60, out=lines.append) == 2
    assert (f"test server: m1-target.{namespace}.svc:5432 (login in Secret m1-target-credentials, "
            "removed at 2030-01-01T00:00:00Z)") in lines


def test_outcome_and_describe_on_a_ready_migration() -> None:
    panel = _panel_module()
    obj: dict[str, Any] = {"metadata": {"generation": 2}, "status": {
        "observedGeneration": 2, "phase": "Ready", "message": "copy verified",
        "conditions": [{"type": "Ready", "status": "True", "reason": "TestServerReady", "message": "ready"}],
        "progress": {"percent": 100, "tablesCopied": 12, "tablesTotal": 12},
        "findings": [{"severity": "warning", "code": "ext", "object": "postgis", "message": "old", "hint": "upgrade"}],
        "testServer": {"host": "h", "port": 5433, "credentialsSecretName": "s", "expiresAt": "t"}}}
    assert panel.outcome(obj) == 0
    text = "\n".join(panel.describe(obj))
    assert "phase: Ready - copy verified" in text and "100% (12/12 tables)" in text
    assert "[warning] ext postgis: old -> upgrade" in text and "test server: h:5433" in text
    obj["metadata"]["generation"] = 3  # a newer spec the operator has not seen yet
    assert panel.outcome(obj) is None
