"""Scenario: the new server's image cannot be pulled; the Migration says so instead of waiting.

  1. a Migration mode=test to 17 whose spec.target.image names an image no node has and no
     registry serves (the kubelet really tries to pull it, and fails);
  2. it stops in Provisioning with Stalled=True, reason TargetNotReady, a message quoting the
     kubelet (ErrImagePull / ImagePullBackOff and the image), a hint, one Warning Event; no copy
     Job; the source keeps serving;
  3. spec.target is immutable, so the way forward is a new Migration: deleting this one removes
     the new server's objects.
"""

from __future__ import annotations

import pytest

from .conftest import Kubectl
from .workload import condition, deploy_source, phase, psql, wait_status

pytestmark = pytest.mark.e2e
NAME = "pg-bad-image"
IMAGE = "registry.dbmigrate.invalid/postgres:17"
MIGRATION = f"""
apiVersion: dbmigrate.dev/v1alpha1
kind: Migration
metadata:
  name: {NAME}
spec:
  mode: test
  source: {{statefulSetName: pg, serviceName: pg, credentialsSecretName: pg-admin}}
  target: {{version: "17", image: "{IMAGE}"}}
"""


def test_an_image_that_cannot_be_pulled_stalls_with_the_kubelets_reason(cluster: Kubectl, operator: str,
                                                                         ns: str) -> None:
    deploy_source(cluster, ns)
    cluster.apply(MIGRATION, ns)

    obj = wait_status(cluster, ns, NAME, "stalled on the image",
                      lambda o: condition(o, "Stalled").get("reason") == "TargetNotReady", timeout=300)
    assert phase(obj) == "Provisioning"
    msg = obj["status"]["message"]
    assert msg.startswith("the target server (PostgreSQL 17) cannot start: pod pg-bad-image-target-0"), msg
    assert ("ErrImagePull" in msg or "ImagePullBackOff" in msg) and IMAGE in msg, msg
    assert "spec.target.image" in condition(obj, "Reconciling")["message"]
    events = cluster.run("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={NAME}",
                         "-o", "jsonpath={range .items[*]}{.type} {.reason}{'\\n'}{end}")
    assert events.count("Warning TargetNotReady") == 1, events
    assert not cluster.run("-n", ns, "get", "job", f"{NAME}-copy", "--ignore-not-found", "-o", "name")
    assert psql(cluster, ns, "SELECT 1") == "1", "the source keeps serving"

    cluster.run("-n", ns, "delete", "mig", NAME, "--wait=true", "--timeout=120s", timeout=130)
    cluster.run("-n", ns, "wait", "--for=delete", f"statefulset/{NAME}-target", "--timeout=120s", timeout=130,
                check=False)
    assert not cluster.run("-n", ns, "get", "statefulset", f"{NAME}-target", "--ignore-not-found", "-o", "name")
