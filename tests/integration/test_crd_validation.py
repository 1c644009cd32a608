"""The apiserver itself rejects bad Migrations with messages a user understands (schema + CEL),
and enforces every immutability rule — with no operator running."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from .manifests import DELETE, migration, with_path

pytestmark = pytest.mark.integration
G, V, P = "dbmigrate.dev", "v1alpha1", "migrations"

BASE = migration()

# (id, manifest, expected substring of the apiserver's message)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-spec", with_path(BASE, "spec", DELETE), "spec: Required value"),
    ("no-source", with_path(BASE, "spec.source", DELETE), "spec.source: Required value"),
    ("no-target", with_path(BASE, "spec.target", DELETE), "spec.target: Required value"),
    ("no-target-version", with_path(BASE, "spec.target.version", DELETE), "spec.target.version: Required value"),
    ("no-sts", with_path(BASE, "spec.source.statefulSetName", DELETE), "spec.source.statefulSetName: Required value"),
    ("no-svc", with_path(BASE, "spec.source.serviceName", DELETE), "spec.source.serviceName: Required value"),
    ("no-secret", with_path(BASE, "spec.source.credentialsSecretName", DELETE),
     "spec.source.credentialsSecretName: Required value"),
    ("bad-mode", with_path(BASE, "spec.mode", "upgrade"), 'Unsupported value: "upgrade"'),
    ("bad-engine", with_path(BASE, "spec.engine", "oracle"), 'Unsupported value: "oracle"'),
    ("sts-uppercase", with_path(BASE, "spec.source.statefulSetName", "PG"), "statefulSetName must be a DNS label"),
    ("sts-underscore", with_path(BASE, "spec.source.statefulSetName", "pg_main"),
     "statefulSetName must be a DNS label"),
    ("sts-too-long", with_path(BASE, "spec.source.statefulSetName", "p" * 64), "Too long"),
    ("svc-dash-start", with_path(BASE, "spec.source.serviceName", "-pg"), "serviceName must be a DNS label"),
    ("svc-digit-start", with_path(BASE, "spec.source.serviceName", "1pg"), "starting with a letter"),
    ("secret-space", with_path(BASE, "spec.source.credentialsSecretName", "pg admin"),
     "credentialsSecretName must be a valid Secret name"),
    ("port-zero", with_path(BASE, "spec.source.port", 0), "should be greater than or equal to 1"),
    ("port-high", with_path(BASE, "spec.source.port", 70000), "should be less than or equal to 65535"),
    ("port-string", with_path(BASE, "spec.source.port", "pg"), "must be of type integer"),
    ("username-key-empty", with_path(BASE, "spec.source.usernameKey", ""), "should be at least 1 chars long"),
    ("source-version-word", with_path(BASE, "spec.source.version", "fifteen"),
     "spec.source.version must be a major version number"),
    ("target-14", with_path(BASE, "spec.target.version", "14"), "must be a supported PostgreSQL major version"),
    ("target-word", with_path(BASE, "spec.target.version", "seventeen"),
     "must be a supported PostgreSQL major version"),
    ("target-19-int", with_path(BASE, "spec.target.version", 19), "must be a supported PostgreSQL major version"),
    ("image-space", with_path(BASE, "spec.target.image", "postgres 17"), "image reference without spaces"),
    ("image-empty", with_path(BASE, "spec.target.image", ""), "should be at least 1 chars long"),
    ("size-words", with_path(BASE, "spec.target.storage", {"size": "20 GB"}), "must be a positive quantity"),
    ("size-zero", with_path(BASE, "spec.target.storage", {"size": "0"}), "must be a positive quantity"),
    ("size-negative", with_path(BASE, "spec.target.storage", {"size": "-1Gi"}), "must be a positive quantity"),
    ("cpu-words", with_path(BASE, "spec.target.resources", {"requests": {"cpu": "lots"}}),
     "spec.target.resources.requests.cpu in body should match"),
    ("ttl-days", with_path(BASE, "spec.test", {"ttl": "1d"}), "spec.test.ttl must be a duration between 1m and 720h"),
    ("ttl-short", with_path(BASE, "spec.test", {"ttl": "30s"}), "spec.test.ttl must be a duration between"),
    ("ttl-long", with_path(BASE, "spec.test", {"ttl": "1000h"}), "spec.test.ttl must be a duration between"),
    ("strategy", with_path(BASE, "spec.execute", {"strategy": "pg_upgrade"}), 'Unsupported value: "pg_upgrade"'),
    ("downtime-zero", with_path(BASE, "spec.execute", {"maxWriteDowntime": "0s"}),
     "maxWriteDowntime must be a duration between 1s and 1h"),
    ("downtime-word", with_path(BASE, "spec.execute", {"maxWriteDowntime": "forever"}),
     "maxWriteDowntime must be a duration"),
    ("retain-short", with_path(BASE, "spec.execute", {"retainSourceFor": "30m"}),
     "retainSourceFor must be a duration of at least 1h"),
    ("name-too-long", with_path(BASE, "metadata.name", "m" * 41), "metadata.name must be at most 40 characters"),
    ("unknown-field", with_path(BASE, "spec.sourc", {"x": 1}), 'unknown field "spec.sourc"'),
    ("smoke-both", with_path(BASE, "spec.test", {"smokeTest": {"sql": {"configMapName": "c"},
                                                               "job": {"template": {"spec": {}}}}}),
     "spec.test.smokeTest needs exactly one of sql or job"),
    ("smoke-none", with_path(BASE, "spec.test", {"smokeTest": {"timeout": "5m"}}),
     "spec.test.smokeTest needs exactly one of sql or job"),
    ("guardrail-age", with_path(BASE, "spec.execute", {"requireSuccessfulTest": {"enabled": True, "maxAge": "1w"}}),
     "maxAge must be a duration"),
]


def _create(api: kubernetes.client.ApiClient, ns: str, doc: dict[str, Any]) -> dict[str, Any]:
    co = kubernetes.client.CustomObjectsApi(api)
    result: dict[str, Any] = co.create_namespaced_custom_object(G, V, ns, P, doc, field_validation="Strict")
    return result


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body).get("message", e.body))
    except (ValueError, TypeError):
        return str(e.body)


def test_at_least_thirty_invalid_cases() -> None:
    assert len(INVALID) >= 30
    assert len({c[0] for c in INVALID}) == len(INVALID)


@pytest.mark.parametrize(("case", "doc", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_rejected(api: kubernetes.client.ApiClient, namespace: str, case: str,
                                   doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(ApiException) as err:
        _create(api, namespace, doc)
    assert err.value.status in (400, 422), _message(err.value)  # strict decoding answers 400
    assert expected in _message(err.value), f"{case}: {_message(err.value)}"


def test_minimal_manifest_gets_defaults(api: kubernetes.client.ApiClient, namespace: str) -> None:
    obj = _create(api, namespace, migration())
    spec = obj["spec"]
    assert spec["mode"] == "test"
    assert spec["engine"] == "postgresql"
    assert spec["source"]["port"] == 5432
    assert spec["source"]["usernameKey"] == "username"
    assert spec["source"]["passwordKey"] == "password"
    # ttl and retainSourceFor have no CRD default: the operator fills in its own (Helm values).
    assert spec["test"] == {}
    assert spec["execute"] == {"strategy": "auto", "maxWriteDowntime": "30s", "switchover": "Automatic"}


@pytest.mark.parametrize("doc", [
    migration("int-version", target={"version": 18}),
    migration("full", mode="execute", engine="postgresql",
              source={"statefulSetName": "db-main", "serviceName": "db", "credentialsSecretName": "db.admin",
                      "usernameKey": "user", "passwordKey": "pass", "port": 5433, "containerName": "pg",
                      "version": "15"},
              target={"version": "18", "image": "registry.local/postgres:18.1",
                      "storage": {"size": "20Gi", "storageClassName": "fast"},
                      "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": 2147483648}}},
              test={"ttl": "1h30m"},
              execute={"strategy": "logical", "maxWriteDowntime": "10s", "retainSourceFor": "72h"}),
    migration("dump", mode="execute", execute={"strategy": "dump"}),
], ids=["int-version", "full", "dump"])
def test_valid_manifests_accepted(api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    obj = _create(api, namespace, doc)
    assert obj["metadata"]["name"] == doc["metadata"]["name"]
    assert obj["spec"]["target"]["version"] == doc["spec"]["target"]["version"]


# ---- immutability -----------------------------------------------------------------------------

def _replace_spec(api: kubernetes.client.ApiClient, ns: str, name: str, mutate: Any) -> dict[str, Any]:
    """Read, change, replace; a 409 means someone (the operator's status write) came between."""
    co = kubernetes.client.CustomObjectsApi(api)
    for _ in range(10):
        obj = co.get_namespaced_custom_object(G, V, ns, P, name)
        mutate(obj["spec"])
        try:
            result: dict[str, Any] = co.replace_namespaced_custom_object(G, V, ns, P, name, obj)
            return result
        except ApiException as e:
            if e.status != 409:
                raise
    raise AssertionError("kept conflicting with concurrent writers")


def _rejected(api: kubernetes.client.ApiClient, ns: str, name: str, mutate: Any, expected: str) -> None:
    with pytest.raises(ApiException) as err:
        _replace_spec(api, ns, name, mutate)
    assert err.value.status == 422
    assert expected in _message(err.value), _message(err.value)


def test_source_is_immutable(api: kubernetes.client.ApiClient, namespace: str) -> None:
    _create(api, namespace, migration())
    _rejected(api, namespace, "m1", lambda s: s["source"].update(statefulSetName="other"),
              "spec.source is immutable")
    _rejected(api, namespace, "m1", lambda s: s["source"].update(port=6543), "spec.source is immutable")


def test_target_is_immutable(api: kubernetes.client.ApiClient, namespace: str) -> None:
    _create(api, namespace, migration())
    _rejected(api, namespace, "m1", lambda s: s["target"].update(version="18"), "spec.target is immutable")
    _rejected(api, namespace, "m1", lambda s: s["target"].update(image="postgres:17.2"), "spec.target is immutable")


def test_test_settings_editable_in_test_mode(api: kubernetes.client.ApiClient, namespace: str) -> None:
    _create(api, namespace, migration())
    obj = _replace_spec(api, namespace, "m1", lambda s: s["test"].update(ttl="48h"))
    assert obj["spec"]["test"]["ttl"] == "48h"


def test_mode_test_to_execute_allowed_never_back(api: kubernetes.client.ApiClient, namespace: str) -> None:
    _create(api, namespace, migration())
    obj = _replace_spec(api, namespace, "m1", lambda s: s.update(mode="execute"))
    assert obj["spec"]["mode"] == "execute"
    _rejected(api, namespace, "m1", lambda s: s.update(mode="test"), "cannot go back from execute to test")


def test_spec_frozen_once_execute(api: kubernetes.client.ApiClient, namespace: str) -> None:
    _create(api, namespace, migration(mode="execute"))
    _rejected(api, namespace, "m1", lambda s: s["execute"].update(maxWriteDowntime="5s"),
              "the spec is immutable once spec.mode is execute")
    _rejected(api, namespace, "m1", lambda s: s["test"].update(ttl="2h"),
              "the spec is immutable once spec.mode is execute")


def test_locked_migration_refuses_every_spec_change(api: kubernetes.client.ApiClient, namespace: str) -> None:
    """The lock is enforced by the apiserver (CEL on the root), whoever writes and whether or
    not the operator runs. The test sets status.locked itself: no operator is involved."""
    co = kubernetes.client.CustomObjectsApi(api)
    _create(api, namespace, migration())
    co.patch_namespaced_custom_object_status(G, V, namespace, P, "m1", {"status": {"locked": True}})
    _rejected(api, namespace, "m1", lambda s: s["test"].update(ttl="48h"), "this Migration is locked")
    _rejected(api, namespace, "m1", lambda s: s.update(mode="execute"), "this Migration is locked")
    # Metadata (labels) stays editable: the lock is about what the migration does.
    obj = co.patch_namespaced_custom_object(G, V, namespace, P, "m1", {"metadata": {"labels": {"team": "a"}}})
    assert obj["metadata"]["labels"] == {"team": "a"}
