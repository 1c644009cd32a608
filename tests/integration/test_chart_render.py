"""The Helm chart, rendered (no cluster needed): lint-clean, valid against the Kubernetes 1.34
schemas (kubeconform, strict), every value lands where it should, and manifests/ is its default
render. The install on the real control plane is in test_chart_install.py."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbmigrate.config import _images

from .chart_helpers import (
    CHART,
    ROOT,
    bin_dir,
    find,
    gen_schemas,
    helm,
    kubeconform,
    render,
    render_text,
    value_args,
    workload,
)

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha": {"replicas": 3},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "namespaced-ha": {"watchNamespaces": ["team-a"], "replicas": 2},
    "metrics": {"metrics": {"service": {"enabled": True}, "serviceMonitor": {"enabled": True}}},
    "no-peering-no-roles": {"peering": {"enabled": False}, "userRoles": {"create": False},
                            "serviceAccount": {"create": False, "name": "existing"}},
    "custom": {"image": {"repository": "registry.local/dbmigrate", "tag": "1.2.3", "pullPolicy": "Always"},
               "logFormat": "json", "images": {"17": "registry.local/pg:17.2"},
               "defaults": {"testTTL": "48h", "retainSourceFor": "336h"},
               "imagePullSecrets": [{"name": "regcred"}], "priorityClassName": "system-cluster-critical",
               "podAnnotations": {"a": "b"}, "nodeSelector": {"kubernetes.io/os": "linux"}},
}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen_schemas(tmp_path_factory.mktemp("schemas"))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    r = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout
    assert "[WARNING]" not in r.stdout and "[ERROR]" not in r.stdout, r.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_render_is_valid_kubernetes_1_34(name: str, schemas: Path, tmp_path: Path) -> None:
    out = tmp_path / "render.yaml"
    out.write_text(render_text(VALUE_SETS[name], include_crds=True))
    # ServiceMonitor's schema belongs to prometheus-operator, which is not available offline:
    # test_metrics_objects_fit_together checks it structurally instead.
    r = kubeconform(schemas, out, skip="ServiceMonitor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Invalid: 0, Errors: 0" in r.stdout, r.stdout
    assert "Valid: 0" not in r.stdout


def test_kubeconform_really_checks(schemas: Path, tmp_path: Path) -> None:
    """Negative control: the same pipeline rejects a broken Deployment and a broken Migration."""
    docs = render()
    dep = workload(docs)
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    dep["spec"]["replicas"] = "one"
    mig = {"apiVersion": "dbmigrate.dev/v1alpha1", "kind": "Migration", "metadata": {"name": "m"},
           "spec": {"mode": "fast", "source": {"statefulSetName": "pg", "serviceName": "pg",
                                                "credentialsSecretName": "s"}, "target": {"version": "17"}}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([dep, mig]))
    r = kubeconform(schemas, bad)
    assert r.returncode != 0
    assert "runAsNonRot" in r.stdout and "/spec/replicas" in r.stdout
    assert "/spec/mode" in r.stdout


def test_examples_are_valid(schemas: Path) -> None:
    files = sorted((ROOT / "examples").glob("*.yaml"))
    assert files
    r = kubeconform(schemas, *files)
    assert r.returncode == 0 and "Invalid: 0, Errors: 0" in r.stdout, r.stdout + r.stderr


def test_chart_ships_kopf_peering_crds() -> None:
    crds = [d for f in sorted((CHART / "crds").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    names = {d["metadata"]["name"]: d["spec"]["scope"] for d in crds}
    assert names == {"migrations.dbmigrate.dev": "Namespaced", "clusterkopfpeerings.kopf.dev": "Cluster",
                     "kopfpeerings.kopf.dev": "Namespaced"}


# -- values -> objects ------------------------------------------------------------------------

def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    c: dict[str, Any] = workload(docs)["spec"]["template"]["spec"]["containers"][0]
    return c


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(docs)["env"]}


def test_default_render() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterKopfPeering", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
                     "Deployment", "ServiceAccount"]
    dep = workload(docs)
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    c = _container(docs)
    assert c["image"] == "dbmigrate:0.1.0"
    assert "--peering=dbmigrate" in c["args"] and "--priority=100" in c["args"]
    assert not any(a.startswith("--namespace") for a in c["args"])
    assert find(docs, "ClusterKopfPeering", "dbmigrate")
    env = _env(docs)
    assert env["DBMIGRATE_LOG_FORMAT"] == "text"
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["DBMIGRATE_METRICS_PORT"] == "9090"
    assert {"name": "metrics", "containerPort": 9090} in c["ports"]
    assert not find(docs, "Service") and not find(docs, "ServiceMonitor")


def test_custom_values_land_in_the_pod() -> None:
    docs = render(VALUE_SETS["custom"])
    c, env = _container(docs), _env(docs)
    pod = workload(docs)["spec"]["template"]
    assert c["image"] == "registry.local/dbmigrate:1.2.3" and c["imagePullPolicy"] == "Always"
    assert env["DBMIGRATE_LOG_FORMAT"] == "json"
    assert env["DBMIGRATE_DEFAULT_TEST_TTL"] == "48h" and env["DBMIGRATE_DEFAULT_RETAIN_SOURCE_FOR"] == "336h"
    # The operator's own parser reads the version->image map the chart writes.
    assert _images(env["DBMIGRATE_IMAGES"]) == {15: "postgres:15", 16: "postgres:16",
                                                17: "registry.local/pg:17.2", 18: "postgres:18"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_watch_namespaces_render_roles_not_a_cluster_role() -> None:
    docs = render(VALUE_SETS["namespaced"])
    args = _container(docs)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in find(docs, "RoleBinding")) == ["team-a", "team-b"]
    operator_cluster_roles = [r for r in find(docs, "ClusterRole") if not r["metadata"]["name"].endswith(
        ("-editor", "-viewer"))]
    assert operator_cluster_roles == [] and find(docs, "ClusterRoleBinding") == []
    # One KopfPeering per watched namespace, and the Roles grant exactly that kind.
    assert sorted(p["metadata"]["namespace"] for p in find(docs, "KopfPeering")) == ["team-a", "team-b"]
    assert not find(docs, "ClusterKopfPeering")
    for r in roles:
        peering = [rule for rule in r["rules"] if rule["apiGroups"] == ["kopf.dev"]]
        assert peering == [{"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
                            "verbs": ["list", "watch", "patch"]}]


def test_replicas_above_one_render_a_statefulset_with_distinct_priorities() -> None:
    docs = render(VALUE_SETS["ha"])
    assert not find(docs, "Deployment")
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    args = _container(docs)["args"]
    assert "--priority=$(DBMIGRATE_POD_INDEX)" in args and "--peering=dbmigrate" in args
    assert _env(docs)["DBMIGRATE_POD_INDEX"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}


def test_peering_disabled_means_standalone_and_no_peering_rbac() -> None:
    docs = render(VALUE_SETS["no-peering-no-roles"])
    args = _container(docs)["args"]
    assert not any(a.startswith(("--peering", "--priority")) for a in args)
    assert not find(docs, "ClusterKopfPeering") and not find(docs, "ServiceAccount")
    (role,) = find(docs, "ClusterRole")
    assert all("kopf.dev" not in r["apiGroups"] for r in role["rules"])
    assert workload(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_metrics_objects_fit_together() -> None:
    docs = render(VALUE_SETS["metrics"])
    (svc,) = find(docs, "Service")
    (sm,) = find(docs, "ServiceMonitor")
    pod = workload(docs)["spec"]["template"]
    port_names = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    # The Service selects the operator pods and targets the metrics port by name.
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (sport,) = svc["spec"]["ports"]
    assert sport["targetPort"] == "metrics" and port_names["metrics"] == sport["port"] == 9090
    # The ServiceMonitor selects that Service and scrapes its named port.
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["dbmigrate-system"]}
    assert sm["spec"]["endpoints"][0]["port"] == sport["name"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    only_service = render({"metrics": {"service": {"enabled": True}}})
    assert find(only_service, "Service") and not find(only_service, "ServiceMonitor")


def test_user_roles_aggregate_into_the_builtin_roles() -> None:
    docs = render()
    editor = find(docs, "ClusterRole", "dbmigrate-editor")[0]
    viewer = find(docs, "ClusterRole", "dbmigrate-viewer")[0]
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for role in (editor, viewer):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            # Nobody but the operator writes status: status.locked is what freezes a Migration.
            if "migrations/status" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_pod_meets_restricted_pod_security_statically() -> None:
    """What the PodSecurity 'restricted' profile checks (test_chart_install proves the admission agrees)."""
    for values in ({}, {"replicas": 2}):
        pod = workload(render(values))["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


# -- manifests/ ---------------------------------------------------------------------------------

def test_manifests_are_the_default_render(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    subprocess.run([sys.executable, str(ROOT / "hack" / "gen-manifests.py"), "--helm", str(bin_dir() / "helm"),
                    "--out", str(out)], check=True, capture_output=True)
    cmp = filecmp.dircmp(out, ROOT / "manifests")

    def diffs(c: filecmp.dircmp[str], prefix: str = "") -> list[str]:
        d = [prefix + f for f in c.left_only + c.right_only + c.diff_files + c.funny_files]
        for name, sub in c.subdirs.items():
            d += diffs(sub, f"{prefix}{name}/")
        return d
    assert diffs(cmp) == [], "manifests/ is stale: run `python hack/gen-manifests.py`"


def test_kustomize_build_equals_the_helm_render() -> None:
    built = subprocess.run([str(bin_dir() / "kubectl"), "kustomize", str(ROOT / "manifests")],
                           check=True, capture_output=True, text=True).stdout
    got = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in yaml.safe_load_all(built) if d}
    want = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
            for d in render(include_crds=True)}
    assert got - want == {("Namespace", None, "dbmigrate-system")}
    assert want <= got


@pytest.mark.parametrize(("values", "message"), [
    ({"logFormat": "xml"}, "/logFormat"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"images": {"17": "postgres 17"}}, "/images/17"),
    ({"defaults": {"testTTL": "1 day"}}, "/defaults/testTTL"),
    ({"replicas": -1}, "/replicas"),
])
def test_values_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    """values.schema.json: a typo fails at `helm install`, not as a crash-looping operator."""
    r = helm("template", "x", str(CHART), *value_args(values), check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr
