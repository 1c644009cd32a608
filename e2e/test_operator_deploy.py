"""The operator installs the way users install it (Helm chart from charts/) and comes up.

Steps:
  1. helm upgrade --install with the locally built images (fixture ``operator``);
  2. the Migration CRD is Established and the Deployment Available;
  3. the operator's own log shows no crash loop (restartCount 0 after it became Ready).
"""

from __future__ import annotations

from .conftest import Kubectl


def test_operator_comes_up_from_the_chart(cluster: Kubectl, operator: str) -> None:
    cluster.wait("crd/migrations.dbmigrate.dev", "condition=Established", timeout=60)
    cluster.wait("deployment/dbmigrate", "condition=Available", operator, timeout=180)
    pods = cluster.json("-n", operator, "get", "pods", "-l", "app.kubernetes.io/name=dbmigrate")["items"]
    assert pods, "no operator pod"
    for pod in pods:
        for cs in pod["status"].get("containerStatuses", []):
            assert cs["ready"], cs
            assert cs["restartCount"] == 0, cs
