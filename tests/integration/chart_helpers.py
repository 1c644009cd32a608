"""Helpers for the chart/RBAC/GitOps tests: render the chart, validate with kubeconform, and run the
operator exactly as the chart's workload would (its args and env, its ServiceAccount's token)."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from controlplane import ControlPlane, free_port, k8s_bin_dir, stop_process

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dbmigrate"
HACK = ROOT / "hack"


@functools.cache
def bin_dir() -> Path:
    return k8s_bin_dir()


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(bin_dir() / "helm"), *args], capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return r


def value_args(values: dict[str, Any] | None) -> list[str]:
    out: list[str] = []
    for k, v in (values or {}).items():
        out += ["--set-json", f"{k}={json.dumps(v)}"]
    return out


def render_text(values: dict[str, Any] | None = None, release: str = "dbmigrate",
                namespace: str = "dbmigrate-system", include_crds: bool = False,
                show_only: tuple[str, ...] = ()) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace, *value_args(values)]
    for s in show_only:
        args += ["--show-only", s]
    if include_crds:
        args.append("--include-crds")
    return helm(*args).stdout


def render(values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(values, **kw)) if d]


def find(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def workload(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    (w,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    return w


@functools.cache
def kubeconform_bin() -> str:
    out = subprocess.run(["bash", str(HACK / "kubeconform.sh")], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def gen_schemas(out: Path) -> Path:
    subprocess.run([sys.executable, str(HACK / "gen-schemas.py"), str(out), "--kube-version", "1.34.0",
                    "--crds", str(ROOT / "crds"), str(CHART / "crds")], check=True, capture_output=True)
    return out


def kubeconform(schemas: Path, *files: Path, skip: str = "") -> subprocess.CompletedProcess[str]:
    args = [kubeconform_bin(), "-strict", "-summary", "-output", "text",
            "-schema-location", f"{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"]
    if skip:
        args += ["-skip", skip]
    return subprocess.run([*args, *map(str, files)], capture_output=True, text=True, check=False)


# -- the operator as the chart runs it ------------------------------------------------------

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod_env(container: dict[str, Any], pod_name: str, namespace: str,
            pod_labels: dict[str, str]) -> dict[str, str]:
    """The container's env as the kubelet would resolve it (values and downward-API fieldRefs)."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
            continue
        path = e["valueFrom"]["fieldRef"]["fieldPath"]
        if path == "metadata.name":
            env[e["name"]] = pod_name
        elif path == "metadata.namespace":
            env[e["name"]] = namespace
        elif m := re.fullmatch(r"metadata\.labels\['(.+)'\]", path):
            env[e["name"]] = pod_labels[m.group(1)]
        else:
            raise AssertionError(f"test cannot resolve fieldRef {path}")
    return env


def expand_args(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


class ChartOperator:
    """`python -m dbmigrate` with the args and env of one pod of the rendered workload."""

    def __init__(self, cp: ControlPlane, workload: dict[str, Any], namespace: str, pod_name: str,
                 workdir: Path, pod_labels: dict[str, str] | None = None) -> None:
        tmpl = workload["spec"]["template"]
        (container,) = [c for c in tmpl["spec"]["containers"] if c["name"] == "operator"]
        labels = {**tmpl["metadata"].get("labels", {}), **(pod_labels or {})}
        self.env = pod_env(container, pod_name, namespace, labels)
        self.health_port, self.metrics_port = free_port(), free_port()
        # Pods have their own network namespace; processes on one host need their own ports.
        self.env["DBMIGRATE_METRICS_PORT"] = str(self.metrics_port)
        self.args = [a if not a.startswith("--liveness=") else f"--liveness=http://127.0.0.1:{self.health_port}/healthz"
                     for a in expand_args(container.get("args", []), self.env)]
        sa = tmpl["spec"]["serviceAccountName"]
        token = cp.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
        workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = cp.kubeconfig_for_token(workdir / f"{pod_name}.kubeconfig", token)
        self.log = workdir / f"{pod_name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChartOperator:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig), "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": str(ROOT / "operator"), "DBMIGRATE_RESYNC_SECONDS": "2"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "dbmigrate", *self.args, "--verbose"],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill, timeout=30)


def wait_until(fn: Any, timeout: float = 60, interval: float = 0.5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def client_as(cp: ControlPlane, admin: Any, ns: str, sa: str, clusterrole: str, tmp: Path) -> Any:
    """A ServiceAccount in ns, bound (RoleBinding in ns) to a ClusterRole; a kubeconfig and client as it."""
    import kubernetes

    k: Any = kubernetes  # plain-dict bodies: the client's stubs only name its model classes
    k.client.CoreV1Api(admin).create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    k.client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(ns, {
        "metadata": {"name": f"{sa}-{clusterrole}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": clusterrole},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
    token = cp.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    path = cp.kubeconfig_for_token(tmp / f"{sa}.kubeconfig", token)
    return k.config.new_client_from_config(config_file=str(path))


def apply_user_roles(cp: ControlPlane) -> list[dict[str, Any]]:
    """The chart's dbmigrate-editor/-viewer (release `dbmigrate`), applied as an admin would."""
    docs = render(show_only=("templates/user-roles.yaml",))
    cp.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))
    return docs
