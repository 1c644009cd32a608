import subprocess
from typing import Any

import pytest

from dbmigrate import resources as r
from dbmigrate.api import parse_spec

OWNER = r.Owner("pg-to-17", "customer-42", "uid-1")
SPEC = parse_spec({"source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "s"},
                   "target": {"version": "17"}})


def _objs(**kw: Any) -> dict[str, dict[str, Any]]:
    args: dict[str, Any] = {"source_size": "8Gi", "source_storage_class": "local", "operator_namespace": "ops",
                            "username": "postgres", "password": "pw-123"}
    args.update(kw)
    objs = r.target_objects(OWNER, args.pop("spec", SPEC), "postgres:17", **args)
    return {f'{o["kind"]}/{o["metadata"]["name"]}': o for o in objs}


def test_every_child_is_owned_and_labelled() -> None:
    objs = _objs()
    assert list(objs) == ["Secret/pg-to-17-target-credentials", "Service/pg-to-17-target-hl",
                          "Service/pg-to-17-target", "NetworkPolicy/pg-to-17-target", "StatefulSet/pg-to-17-target"]
    for o in objs.values():
        m = o["metadata"]
        assert m["namespace"] == "customer-42"
        assert m["ownerReferences"] == [{"apiVersion": "dbmigrate.dev/v1alpha1", "kind": "Migration",
                                         "name": "pg-to-17", "uid": "uid-1", "controller": True,
                                         "blockOwnerDeletion": True}]
        assert m["labels"]["dbmigrate.dev/migration"] == "pg-to-17"
        assert m["labels"]["app.kubernetes.io/managed-by"] == "dbmigrate"


def test_statefulset_is_restricted_and_takes_credentials_by_reference() -> None:
    sts = _objs()["StatefulSet/pg-to-17-target"]
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                      "fsGroupChangePolicy": "OnRootMismatch",
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = pod["containers"]
    assert c["image"] == "postgres:17"
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "runAsNonRoot": True}
    env = {e["name"]: e for e in c["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg-to-17-target-credentials",
                                                                    "key": "password"}
    assert "pw-123" not in str(sts)
    assert "wal_level=minimal" in c["args"]  # a test copy loads without WAL
    execute = parse_spec({"mode": "execute", "source": {"statefulSetName": "pg", "serviceName": "pg",
                                                        "credentialsSecretName": "s"}, "target": {"version": "17"}})
    ex = _objs(spec=execute)["StatefulSet/pg-to-17-target"]["spec"]["template"]["spec"]["containers"][0]
    assert "wal_level=logical" in ex["args"]
    assert r.wal_level_of(ex["args"]) == "logical" and r.wal_level_of(c["args"]) == "minimal"
    # Strategy dump restarts the server with another wal_level: only its command line changes.
    patch = r.server_args_patch("minimal")
    assert patch == {"spec": {"template": {"spec": {"containers": [
        {"name": ex["name"], "args": c["args"]}]}}}}
    assert "max_wal_senders=0" in c["args"]  # required by wal_level=minimal
    assert pod["automountServiceAccountToken"] is False
    assert sts["spec"]["serviceName"] == "pg-to-17-target-hl"
    assert sts["spec"]["selector"]["matchLabels"] == sts["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize(("spec_size", "source", "expected"), [
    (None, "8Gi", "10Gi"), (None, "10Gi", "13Gi"), (None, "500Mi", "1Gi"), (None, None, "1Gi"),
    (None, "garbage", "1Gi"), ("20Gi", "8Gi", "20Gi"), (None, "100G", "117Gi"),
])
def test_volume_size(spec_size: str | None, source: str | None, expected: str) -> None:
    spec = parse_spec({"source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "s"},
                       "target": {"version": "17", **({"storage": {"size": spec_size}} if spec_size else {})}})
    assert r.target_size(spec, source) == expected


def test_storage_class_and_resources_from_spec() -> None:
    spec = parse_spec({"source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "s"},
                       "target": {"version": "17", "storage": {"storageClassName": "fast"},
                                  "resources": {"limits": {"memory": "2Gi"}}}})
    sts = _objs(spec=spec)["StatefulSet/pg-to-17-target"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}
    default = _objs()["StatefulSet/pg-to-17-target"]
    assert default["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "local"
    assert "resources" not in default["spec"]["template"]["spec"]["containers"][0]
    # Without resources in the spec, the new server gets the source container's (not whatever
    # a LimitRange would default to); the spec's win when given.
    src = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    inherited = _objs(source_resources=src)["StatefulSet/pg-to-17-target"]
    assert inherited["spec"]["template"]["spec"]["containers"][0]["resources"] == src
    own = _objs(spec=spec, source_resources=src)["StatefulSet/pg-to-17-target"]
    assert own["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}


def test_copy_jobs_take_the_configured_parallelism_and_resources() -> None:
    res = {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
    job = r.copy_job(OWNER, SPEC, "dbmigrate-worker:17", jobs=6, job_resources=res)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][-2:] == ["--jobs", "6"] and c["resources"] == res
    assert "resources" not in r.copy_job(OWNER, SPEC, "dbmigrate-worker:17")["spec"]["template"]["spec"][
        "containers"][0]


def test_services() -> None:
    objs = _objs()
    hl, svc = objs["Service/pg-to-17-target-hl"], objs["Service/pg-to-17-target"]
    assert hl["spec"]["clusterIP"] == "None"
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 5432
    assert svc["spec"]["selector"] == objs["StatefulSet/pg-to-17-target"]["spec"]["selector"]["matchLabels"]


def test_network_policy_admits_namespace_and_operator_only() -> None:
    np = _objs()["NetworkPolicy/pg-to-17-target"]["spec"]
    assert np["policyTypes"] == ["Ingress"]
    assert np["ingress"][0]["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]
    same = _objs(operator_namespace="customer-42")["NetworkPolicy/pg-to-17-target"]["spec"]
    assert same["ingress"][0]["from"] == [{"podSelector": {}}]


def test_secret_holds_generated_login() -> None:
    sec = _objs()["Secret/pg-to-17-target-credentials"]
    assert sec["stringData"] == {"username": "postgres", "password": "pw-123"}


def test_smoke_jobs_inject_the_login_by_reference() -> None:
    base = {"source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "s"},
            "target": {"version": "17"}}
    sql = parse_spec({**base, "test": {"smokeTest": {"sql": {"configMapName": "checks", "key": "a.sql"}}}})
    job = r.smoke_job(OWNER, sql, "postgres:17", {"requests": {"cpu": "100m"}})
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "100m"}}
    assert c["command"][:2] == ["sh", "-c"] and c["command"][4] == "/smoke/a.sql" and c["image"] == "postgres:17"
    assert pod["volumes"] == [{"name": "smoke", "configMap": {"name": "checks", "optional": True}}]
    # A missing ConfigMap (mounted optional: an empty directory) or key fails at once, saying so.
    done = subprocess.run([*c["command"][:3], "smoke", "/nonexistent/a.sql", c["command"][5]],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1 and done.stderr.strip() == (
        'the smoke test\'s ConfigMap "checks" does not exist in this namespace or has no key "a.sql": '
        'create it, or fix spec.test.smokeTest.sql')
    env = {e["name"]: e for e in c["env"]}
    assert env["PGHOST"]["value"] == "pg-to-17-target.customer-42.svc"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "pg-to-17-target-credentials"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert pod["securityContext"]["runAsNonRoot"] is True
    user = parse_spec({**base, "test": {"smokeTest": {"timeout": "2m", "job": {"template": {
        "metadata": {"labels": {"app": "shop-tests"}},
        "spec": {"containers": [{"name": "t", "image": "shop:1.2", "env": [{"name": "MODE", "value": "ci"}]}]}}}}}})
    job = r.smoke_job(OWNER, user, "postgres:17", {"requests": {"cpu": "100m"}})
    t = job["spec"]["template"]
    assert "resources" not in t["spec"]["containers"][0]  # the user's own pod: as they wrote it
    assert t["metadata"]["labels"]["app"] == "shop-tests"
    assert t["metadata"]["labels"]["dbmigrate.dev/migration"] == "pg-to-17"
    names = [e["name"] for e in t["spec"]["containers"][0]["env"]]
    assert names[:1] == ["MODE"] and {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"} <= set(names)
    assert t["spec"]["restartPolicy"] == "Never" and job["spec"]["activeDeadlineSeconds"] == 120


def test_execute_reaches_the_source_through_its_own_service() -> None:
    """The source's Service moves to the new server at the point of no return; the steps after
    it (and the subscription) must still reach the old server: execute uses <name>-source."""
    execute = parse_spec({"mode": "execute", "source": {"statefulSetName": "pg", "serviceName": "pg",
                                                        "credentialsSecretName": "s"}, "target": {"version": "17"}})
    svc = r.source_service(OWNER, {"app": "pg"}, 5432, "pgport")
    assert svc["metadata"]["name"] == "pg-to-17-source"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert svc["spec"]["selector"] == {"app": "pg"}
    assert svc["spec"]["ports"] == [{"name": "postgres", "port": 5432, "targetPort": "pgport"}]
    assert r.source_host(OWNER, execute) == "pg-to-17-source.customer-42.svc"
    assert r.source_host(OWNER, SPEC) == "pg.customer-42.svc"  # test mode: nothing moves
    env = {e["name"]: e.get("value") for e in r.copy_job(OWNER, execute, "w:17", command="schema")
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SOURCE_HOST"] == "pg-to-17-source.customer-42.svc"
    # The execute copy runs while writes are stopped: it may take every free connection of the
    # source; a test copy (and the online schema copy) leaves half of them to the applications.
    command = r.copy_job(OWNER, execute, "w:17")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--source-share", "1"]
    for other in (r.copy_job(OWNER, SPEC, "w:17"), r.copy_job(OWNER, execute, "w:17", command="schema")):
        assert "--source-share" not in other["spec"]["template"]["spec"]["containers"][0]["command"]
