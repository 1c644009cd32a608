"""The chart on the real control plane: `helm install` into a namespace that enforces the Pod
Security "restricted" profile, the pods the controllers create from it are admitted, the operator
comes up with exactly the chart's args/env/ServiceAccount, and with replicas > 1 a standby takes
over when the active replica stops (kopf peering with distinct priorities)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from controlplane import ControlPlane

from .chart_helpers import CHART, ChartOperator, helm, value_args, wait_until
from .conftest import GROUP, PLURAL, VERSION
from .manifests import migration

pytestmark = pytest.mark.integration

RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


def _ns(api: kubernetes.client.ApiClient, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    return name


def _helm(cp: ControlPlane, *args: str) -> str:
    return helm(*args, "--kubeconfig", str(cp.kubeconfig)).stdout


def _pods(api: kubernetes.client.ApiClient, ns: str, release: str) -> list[Any]:
    return list(kubernetes.client.CoreV1Api(api).list_namespaced_pod(
        ns, label_selector=f"app.kubernetes.io/instance={release}").items)


def _acted(ns: str) -> str:
    """Log line of the operator's own request reading a Migration's source (kube.read_source):
    proof that this replica, not another, reconciled in that namespace (logged with --verbose)."""
    return f"/namespaces/{ns}/statefulsets/pg "


def _forbidden(log: str) -> list[str]:
    """Requests the operator was refused. A namespaced install has no cluster-scope rights, so kopf's
    discovery of namespaces and CRDs is refused and kopf falls back to the namespaces it was given
    (kopf settings.scanning.disabled would skip that discovery): those two are expected."""
    return [ln[:300] for ln in log.splitlines()
            if ("Forbidden" in ln or " 403 " in ln)
            and "/api/v1/namespaces ->" not in ln and "/customresourcedefinitions ->" not in ln
            and "to list namespaces" not in ln and "to watch for resources" not in ln]


def _peers(cp: ControlPlane, kind: str, name: str, ns: str | None = None) -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"] + (["-n", ns] if ns else [])
    status: dict[str, Any] = json.loads(cp.kubectl(*args).stdout).get("status") or {}
    return status


class Install:
    def __init__(self, cp: ControlPlane, ns: str, release: str, notes: str) -> None:
        self.cp, self.ns, self.release, self.notes = cp, ns, release, notes
        self.fullname = f"{release}-dbmigrate"

    def live(self, kind: str) -> dict[str, Any]:
        out = self.cp.kubectl("get", kind, self.fullname, "-n", self.ns, "-o", "json").stdout
        obj: dict[str, Any] = json.loads(out)
        return obj


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, api: kubernetes.client.ApiClient) -> Iterator[Install]:
    cp = control_plane
    ns = _ns(api, "dbm-restricted", RESTRICTED)
    release = "dbm-it"
    out = helm("install", release, str(CHART), "-n", ns, "--kubeconfig", str(cp.kubeconfig))
    try:
        yield Install(cp, ns, release, out.stdout + out.stderr)
    finally:
        helm("uninstall", release, "-n", ns, "--kubeconfig", str(cp.kubeconfig), check=False)
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_is_accepted_without_pod_security_warnings(installed: Install) -> None:
    assert "STATUS: deployed" in installed.notes
    assert "Warning" not in installed.notes and "PodSecurity" not in installed.notes, installed.notes
    dep = installed.live("deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == installed.fullname
    # Helm installed the kopf peering CRDs from crds/ and the chart's peering object.
    assert installed.cp.kubectl("get", "clusterkopfpeering", installed.fullname).returncode == 0
    assert f"rollout status deployment/{installed.fullname}" in installed.notes
    assert "--clusterrole=edit" in installed.notes and "locked" in installed.notes


def test_restricted_namespace_admits_the_operator_pod(installed: Install, api: kubernetes.client.ApiClient) -> None:
    """The controller-manager creates the pod from the Deployment; PodSecurity 'restricted' admits it."""
    pods = wait_until(lambda: _pods(api, installed.ns, installed.release), timeout=60, what="operator pod")
    assert len(pods) == 1 and pods[0].status.phase == "Pending"  # no kubelet here: admitted, never runs
    # Negative control: the same pod without its securityContext is rejected in that namespace.
    bad = kubernetes.client.ApiClient().sanitize_for_serialization(pods[0].spec)
    bad = {"metadata": {"name": "insecure"}, "spec": {
        "serviceAccountName": bad["serviceAccountName"],
        "containers": [{"name": "operator", "image": bad["containers"][0]["image"]}]}}
    with pytest.raises(ApiException) as e:
        kubernetes.client.CoreV1Api(api).create_namespaced_pod(installed.ns, bad)
    assert e.value.status == 403 and "violates PodSecurity" in e.value.body and "restricted" in e.value.body


def test_operator_comes_up_as_the_chart_runs_it(installed: Install, api: kubernetes.client.ApiClient,
                                                tmp_path: Path) -> None:
    """Args, env and ServiceAccount of the live Deployment: health endpoint answers, the replica
    registers in the ClusterKopfPeering with the chart's priority, and it reconciles Migrations."""
    cp = installed.cp
    pod = f"{installed.fullname}-7d4b9c-x1"
    op = ChartOperator(cp, installed.live("deployment"), installed.ns, pod, tmp_path).start()
    work_ns = _ns(api, "dbm-work")
    try:
        wait_until(op.healthy, timeout=90, what="operator /healthz")
        peers = wait_until(lambda: _peers(cp, "clusterkopfpeering", installed.fullname).get(pod),
                           timeout=60, what="peering keep-alive")
        assert peers["priority"] == 100
        kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, work_ns, PLURAL, migration("m1"))
        wait_until(lambda: _acted(work_ns) in op.text(), timeout=60, what="reconcile by this replica")
        assert _forbidden(op.text()) == [], _forbidden(op.text())
    finally:
        op.stop()
        cp.kubectl("delete", "namespace", work_ns, "--wait=false", check=False)
    # A clean stop removes the replica from the peering at once (a standby need not wait).
    wait_until(lambda: pod not in _peers(cp, "clusterkopfpeering", installed.fullname), timeout=30,
               what="keep-alive removed on exit")


def test_upgrade_to_several_replicas_runs_a_restricted_statefulset(installed: Install,
                                                                   api: kubernetes.client.ApiClient) -> None:
    out = helm("upgrade", installed.release, str(CHART), "-n", installed.ns, "--kubeconfig",
               str(installed.cp.kubeconfig), *value_args({"replicas": 2}))
    text = out.stdout + out.stderr
    assert "PodSecurity" not in text and "standbys" in text
    sts = installed.live("statefulset")
    assert sts["spec"]["replicas"] == 2

    def two_pods() -> list[Any]:
        pods = [p for p in _pods(api, installed.ns, installed.release)
                if p.metadata.owner_references and p.metadata.owner_references[0].kind == "StatefulSet"]
        return pods if len(pods) == 2 else []
    pods = wait_until(two_pods, timeout=90, what="two StatefulSet pods admitted")
    assert sorted(p.metadata.labels["apps.kubernetes.io/pod-index"] for p in pods) == ["0", "1"]


def _resumed(log: str) -> bool:
    """The replica's last word on peering was that it resumes (kopf logs both at INFO)."""
    return log.rfind("Resuming operations") > log.rfind("Pausing operations in favour of")


def test_standby_takes_over_when_the_active_replica_stops(control_plane: ControlPlane,
                                                         api: kubernetes.client.ApiClient, tmp_path: Path) -> None:
    """replicas: 2, watching one namespace (Roles + a KopfPeering there): pod 1 acts, pod 0 waits;
    when pod 1 stops, pod 0 resumes and reconciles the next Migration; when pod 1 is back, pod 0
    yields again; when pod 1 crashes, pod 0 takes over after the keep-alive expires."""
    cp = control_plane
    op_ns = _ns(api, "dbm-ha", RESTRICTED)
    watch_ns = _ns(api, "dbm-watched")
    release, co = "dbm-ha", kubernetes.client.CustomObjectsApi(api)
    helm("install", release, str(CHART), "-n", op_ns, "--kubeconfig", str(cp.kubeconfig),
         *value_args({"replicas": 2, "watchNamespaces": [watch_ns]}))
    ops: list[ChartOperator] = []
    try:
        sts = json.loads(cp.kubectl("get", "statefulset", f"{release}-dbmigrate", "-n", op_ns, "-o", "json").stdout)
        for i in (0, 1):
            ops.append(ChartOperator(cp, sts, op_ns, f"{release}-dbmigrate-{i}", tmp_path,
                                     pod_labels={"apps.kubernetes.io/pod-index": str(i)}).start())
        standby, active = ops
        assert "--priority=0" in standby.args and "--priority=1" in active.args
        assert f"--namespace={watch_ns}" in active.args
        for op in ops:
            wait_until(op.healthy, timeout=90, what="replica /healthz")
        peering = f"{release}-dbmigrate"
        wait_until(lambda: len(_peers(cp, "kopfpeering", peering, watch_ns)) == 2, timeout=60, what="two peers")
        # kopf starts every replica paused until it has read the peering object. A standby that
        # first reads it with the active replica in it stays paused without a word; one that
        # read it before the active replica's first keep-alive resumes, then pauses (logged).
        # Either way: paused now, and still so 2 s later.
        def paused() -> bool:
            if _resumed(standby.text()):
                return False
            time.sleep(2)
            return not _resumed(standby.text())

        wait_until(paused, timeout=60, interval=0.2, what="standby pauses")

        co.create_namespaced_custom_object(GROUP, VERSION, watch_ns, PLURAL, migration("before"))
        wait_until(lambda: _acted(watch_ns) in active.text(), timeout=60, what="active reconciles")
        assert _acted(watch_ns) not in standby.text()

        mark = len(standby.text())
        active.stop()  # SIGTERM, as a rolling update or node drain does
        wait_until(lambda: "Resuming operations" in standby.text()[mark:], timeout=60, what="standby resumes")
        co.create_namespaced_custom_object(GROUP, VERSION, watch_ns, PLURAL, migration("after"))
        wait_until(lambda: _acted(watch_ns) in standby.text(), timeout=60, what="standby took over")

        # The higher-priority replica comes back (its pod restarted): the standby yields again and,
        # while paused, reconciles nothing (its 2 s resync timer would otherwise show up in the log).
        mark = len(standby.text())
        restarted = ChartOperator(cp, sts, op_ns, f"{release}-dbmigrate-1", tmp_path,
                                  pod_labels={"apps.kubernetes.io/pod-index": "1"}).start()
        ops.append(restarted)
        wait_until(lambda: "Pausing operations in favour of" in standby.text()[mark:], timeout=90,
                   what="standby pauses for the restarted replica")
        # A reconcile already running when the pause came finishes (kopf does not cancel it):
        # wait for 3 s without its requests. A standby that kept its 2 s timer never gets there.

        def quiet() -> bool:
            before = standby.text().count(_acted(watch_ns))
            time.sleep(3)
            return standby.text().count(_acted(watch_ns)) == before

        wait_until(quiet, timeout=30, interval=0, what="the standby's last reconcile to end")
        mark = len(standby.text())
        time.sleep(6)
        assert _acted(watch_ns) not in standby.text()[mark:]
        assert wait_until(lambda: _acted(watch_ns) in restarted.text(), timeout=60, what="restarted replica acts")

        # Crash (SIGKILL, no goodbye in the peering object): the standby resumes once the dead
        # replica's keep-alive expires (kopf's peering lifetime, 60 s).
        mark = len(standby.text())
        restarted.stop(kill=True)
        wait_until(lambda: "Resuming operations" in standby.text()[mark:], timeout=150,
                   what="standby resumes after the crash")
        mark = len(standby.text())
        wait_until(lambda: _acted(watch_ns) in standby.text()[mark:], timeout=60, what="standby acts again")
        assert _forbidden(standby.text()) == [], _forbidden(standby.text())
    finally:
        for op in ops:
            op.stop()
        helm("uninstall", release, "-n", op_ns, "--kubeconfig", str(cp.kubeconfig), check=False)
        for ns in (op_ns, watch_ns):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_plain_manifests_apply_on_the_real_apiserver(control_plane: ControlPlane) -> None:
    """manifests/ as documented: the CRD base first, then everything (server-side dry run: every
    object passes the apiserver's validation and admission; only CRDs and the namespace stay)."""
    cp = control_plane
    manifests = str(CHART.parents[1] / "manifests")
    # The Migration CRD is shared with the other tests (installed by the session fixture): only the
    # kopf CRDs are applied for real; the CRD base as a whole goes through a server-side dry run.
    cp.kubectl("apply", "--server-side", "-f", f"{manifests}/crds/kopf.dev_peerings.yaml")
    r = cp.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", f"{manifests}/crds",
                   check=False)
    assert r.returncode == 0 and r.stdout.count("(server dry run)") == 3, r.stdout + r.stderr
    for crd in ("migrations.dbmigrate.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        wait_until(lambda c=crd: cp.kubectl("get", "crd", c, "-o", "jsonpath={.status.conditions[?(@.type=="
                                            "'Established')].status}", check=False).stdout == "True",
                   timeout=60, what=f"{crd} established")
    # A dry run cannot put objects into a namespace it only pretends to create.
    cp.kubectl("apply", "--server-side", "-f", f"{manifests}/namespace.yaml")
    r = cp.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", manifests, check=False)
    assert r.returncode == 0, r.stderr
    applied = [ln for ln in r.stdout.splitlines() if "(server dry run)" in ln]
    for kind in ("namespace/dbmigrate-system", "deployment.apps/dbmigrate", "clusterkopfpeering.kopf.dev/dbmigrate",
                 "clusterrole.rbac.authorization.k8s.io/dbmigrate-editor", "serviceaccount/dbmigrate"):
        assert any(ln.startswith(kind + " ") for ln in applied), (kind, r.stdout)
    assert "Warning" not in r.stderr, r.stderr
