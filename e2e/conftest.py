"""Fixtures of the e2e suite: a real cluster whose kubelet runs containers.

Steps of the session fixture ``cluster``:
  1. If ``$KUBECONFIG`` (or ``E2E_KUBECONFIG``) names a cluster whose ``/readyz`` answers, use it
     as it is and never tear it down.
  2. Else, with ``E2E_CLUSTER=kind``, create a kind cluster (needs Docker: not on these machines).
  3. Else run ``hack/cluster/up.sh`` (the local single-node cluster, root only) and tear it down
     at the end unless ``E2E_KEEP_CLUSTER=1`` or it was already running before the session.
Every test gets its own namespace (``ns``), deleted afterwards.

Only ``kubectl`` is used (no Python Kubernetes client), so the suite runs the same against any
cluster; cluster creation is the only part that differs between the local cluster and kind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("DBMIGRATE_CACHE", Path.home() / ".cache" / "dbmigrate"))
LOCAL_RUN = Path(os.environ.get("DBMIGRATE_CLUSTER_DIR", CACHE / "cluster"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a real cluster with a kubelet (hack/cluster/up.sh)")
    config.addinivalue_line("markers", "localcluster: checks the hack/cluster local cluster itself")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Kubectl:
    """A thin kubectl runner bound to one kubeconfig."""

    kubeconfig: str
    binary: str = "kubectl"
    kind: str = "external"  # external | local | kind
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, manifest: str, namespace: str | None = None) -> str:
        ns = ["-n", namespace] if namespace else []
        return self.run(*ns, "apply", "-f", "-", input=manifest)

    def wait(self, what: str, condition: str, namespace: str | None = None, timeout: int = 120) -> None:
        ns = ["-n", namespace] if namespace else []
        self.run(*ns, "wait", f"--for={condition}", what, f"--timeout={timeout}s", timeout=timeout + 30)

    def exec(self, namespace: str, pod: str, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        return self.run("-n", namespace, "exec", pod, "--", *cmd, check=check, timeout=timeout)


def _answers(kubectl: Kubectl) -> bool:
    try:
        return kubectl.run("get", "--raw", "/readyz", check=False, timeout=10).strip() == "ok"
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False


def _kubectl_binary() -> str:
    local = LOCAL_RUN / "kubectl"
    if local.exists():
        return str(local)
    return shutil.which("kubectl") or "kubectl"


def _build_images() -> None:
    """The images the suite's pods and the migrations' targets use on the local cluster (no
    registry: built here and imported into its containerd; a no-op when up to date)."""
    images = os.environ.get("E2E_IMAGES", "postgres15 postgres16 postgres17 postgres18").split()
    built = subprocess.run(
        ["bash", str(REPO / "images/build.sh"), *images], capture_output=True, text=True, timeout=3600
    )
    if built.returncode != 0:
        pytest.fail(f"images/build.sh {' '.join(images)} failed:\n{built.stderr[-6000:]}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Kubectl]:
    kubeconfig = os.environ.get("E2E_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if kubeconfig:
        k = Kubectl(kubeconfig=kubeconfig, binary=_kubectl_binary())
        if Path(kubeconfig).resolve() == (LOCAL_RUN / "admin.kubeconfig").resolve():
            k.kind = "local"
        if _answers(k):
            if k.kind == "local":
                _build_images()
            yield k
            return
    if os.environ.get("E2E_CLUSTER") == "kind":
        if not shutil.which("kind") or not shutil.which("docker"):
            pytest.skip("E2E_CLUSTER=kind needs kind and a Docker engine")
        name = "dbmigrate-e2e"
        kc = str(CACHE / "kind.kubeconfig")
        subprocess.run(["kind", "create", "cluster", "--name", name, "--kubeconfig", kc, "--wait", "120s"], check=True)
        try:
            yield Kubectl(kubeconfig=kc, binary=_kubectl_binary(), kind="kind")
        finally:
            if os.environ.get("E2E_KEEP_CLUSTER") != "1":
                subprocess.run(["kind", "delete", "cluster", "--name", name], check=False)
        return
    if os.geteuid() != 0:
        pytest.skip("no cluster answers at $KUBECONFIG and the local cluster needs root")
    local_kc = LOCAL_RUN / "admin.kubeconfig"
    was_running = local_kc.exists() and _answers(Kubectl(kubeconfig=str(local_kc), binary=_kubectl_binary()))
    up = subprocess.run(["bash", str(REPO / "hack/cluster/up.sh")], capture_output=True, text=True, timeout=1800)
    if up.returncode != 0:
        pytest.fail(f"hack/cluster/up.sh failed ({up.returncode}):\n{up.stderr[-6000:]}")
    k = Kubectl(kubeconfig=up.stdout.strip().splitlines()[-1], binary=_kubectl_binary(), kind="local")
    _build_images()
    try:
        yield k
    finally:
        if not was_running and os.environ.get("E2E_KEEP_CLUSTER") != "1":
            subprocess.run(["bash", str(REPO / "hack/cluster/down.sh")], check=False, timeout=300)


@pytest.fixture
def ns(cluster: Kubectl) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.run("create", "namespace", name)
    # the namespace's default ServiceAccount appears a moment after the namespace
    deadline = time.monotonic() + 30
    while cluster.run("-n", name, "get", "serviceaccount", "default", check=False).strip() == "":
        if time.monotonic() > deadline:
            raise AssertionError(f"no default ServiceAccount in {name}")
        time.sleep(0.5)
    try:
        yield name
    finally:
        if os.environ.get("E2E_KEEP_NAMESPACES") != "1":
            cluster.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def local_cluster(cluster: Kubectl) -> Kubectl:
    """The cluster, when it is the hack/cluster one on this machine (host-level checks)."""
    if cluster.kind != "local":
        pytest.skip("host-level checks apply to hack/cluster's local cluster only")
    if os.geteuid() != 0:
        pytest.skip("reading iptables needs root")
    return cluster


OPERATOR_NAMESPACE = os.environ.get("E2E_OPERATOR_NAMESPACE", "dbmigrate-system")


def _helm_binary() -> str:
    cached = CACHE / "k8s" / os.environ.get("K8S_VERSION", "v1.34.4") / "bin" / "helm"
    if cached.exists():
        return str(cached)
    return shutil.which("helm") or "helm"


@pytest.fixture(scope="session")
def operator(cluster: Kubectl) -> Iterator[str]:
    """The operator deployed the way users deploy it: the Helm chart from charts/, with the
    locally built images (no registry: pullPolicy Never). Yields its namespace.

    E2E_OPERATOR=skip leaves whatever runs alone (e.g. an operator started by hand)."""
    if os.environ.get("E2E_OPERATOR") == "skip":
        yield OPERATOR_NAMESPACE
        return
    helm = _helm_binary()
    if cluster.kind == "local":
        built = subprocess.run(
            ["bash", str(REPO / "images/build.sh"), "operator", "worker15", "worker16", "worker17", "worker18"],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if built.returncode != 0:
            pytest.fail(f"images/build.sh (operator, workers) failed:\n{built.stderr[-6000:]}")
    # Helm installs a chart's CRDs only once; on a cluster that outlives a change of the CRD the
    # apiserver would prune new status fields. Upgrade it first, as the README tells users to.
    cluster.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "charts/dbmigrate/crds/"))
    cmd = [
        helm,
        "upgrade",
        "--install",
        "dbmigrate",
        str(REPO / "charts/dbmigrate"),
        "--kubeconfig",
        cluster.kubeconfig,
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        "image.pullPolicy=Never",
        # The e2e sources are small: load every strategy dump copy without WAL, so that the
        # new server's two restarts around it run for real.
        "--set",
        "dumpStrategy.walFreeLoadMinBytes=0",
        "--wait",
        "--timeout",
        "180s",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        logs = cluster.run("-n", OPERATOR_NAMESPACE, "logs", "deployment/dbmigrate", "--tail=50", check=False)
        pytest.fail(f"helm install failed:\n{p.stdout}\n{p.stderr}\noperator logs:\n{logs}")
    try:
        yield OPERATOR_NAMESPACE
    finally:
        if os.environ.get("E2E_KEEP_OPERATOR") != "1":
            subprocess.run(
                [helm, "uninstall", "dbmigrate", "--kubeconfig", cluster.kubeconfig, "--namespace", OPERATOR_NAMESPACE],
                capture_output=True,
                timeout=120,
                check=False,
            )
