"""Integration tier: a real etcd + kube-apiserver + kube-controller-manager on loopback.

The operator runs as a separate process (`python -m dbmigrate`) authenticated as the
chart's own ServiceAccount with the chart's own RBAC, so a missing permission fails a test.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from controlplane import ControlPlane, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "dbmigrate.dev_migrations.yaml"
OPERATOR_NS = "dbmigrate-system"
GROUP, VERSION, PLURAL = "dbmigrate.dev", "v1alpha1", "migrations"


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("controlplane")).start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CRD))
        # `kubectl wait` errors out (instead of waiting) while the CRD has no conditions yet.
        wait_for(lambda: cp.kubectl("get", "crd/migrations.dbmigrate.dev", "-o",
                                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                                    check=False).stdout == "True", timeout=60, what="CRD Established")
        yield cp
    finally:
        if request.session.testsfailed:
            cp.print_logs()
        cp.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture
def namespace(api: kubernetes.client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(ApiException):  # already gone is fine
        core.delete_namespace(name)


def wait_for(fn: Callable[[], Any], timeout: float = 30, interval: float = 0.3, what: str = "") -> Any:
    """Poll until fn() returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}; last value: {last!r}")


def helm_render(cp: ControlPlane, *show_only: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    args = [str(cp.bin / "helm"), "template", "dbmigrate", str(ROOT / "charts" / "dbmigrate"),
            "--namespace", OPERATOR_NS]
    for s in show_only:
        args += ["--show-only", s]
    for k, v in (values or {}).items():
        args += ["--set-json", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


class OperatorProcess:
    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp, self.dir = cp, workdir
        self.log = workdir / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        token = cp.kubectl("create", "token", "dbmigrate", "-n", OPERATOR_NS, "--duration=24h").stdout.strip()
        self.kubeconfig = cp.kubeconfig_for_token(workdir / "operator.kubeconfig", token)
        self.metrics_port = free_port()

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "DBMIGRATE_RESYNC_SECONDS": "2",
               "DBMIGRATE_NAMESPACE": OPERATOR_NS, "DBMIGRATE_PREFLIGHT_TIMEOUT_SECONDS": "20",
               "DBMIGRATE_METRICS_PORT": str(self.metrics_port), "DBMIGRATE_LOG_FORMAT": "json",
               # the loopback apiserver's self-signed certificate is not verified; keep logs JSON
               "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT / "operator")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dbmigrate", "--liveness="],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)

    def wait_ready(self, timeout: float = 60) -> None:
        """The metrics endpoint answers once the operator's startup handlers ran."""
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2):
                    return True
            except OSError:
                return False
        wait_for(up, timeout=timeout, what="operator metrics endpoint")

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill, timeout=20)

    def tail(self, n: int = 80) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


@pytest.fixture(scope="session")
def operator(request: pytest.FixtureRequest, control_plane: ControlPlane,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator with the chart's ServiceAccount + RBAC (nothing more)."""
    cp = control_plane
    cp.kubectl("create", "namespace", OPERATOR_NS, check=False)
    docs = helm_render(cp, "templates/serviceaccount.yaml", "templates/rbac.yaml")
    cp.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=dbmigrate-tests", "-f", "-",
               input="\n---\n".join(yaml.safe_dump(d) for d in docs))
    op = OperatorProcess(cp, tmp_path_factory.mktemp("operator"))
    op.start()
    op.wait_ready()
    yield op
    op.stop()
    if request.session.testsfailed:
        print(f"----- operator log (last lines of {op.log}) -----\n{op.tail()}", file=sys.stderr)
