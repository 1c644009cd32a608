"""Pure builders for the children of a Migration: plain dicts, no I/O.

Every child carries the same labels and a controller ownerReference to its Migration, so the
garbage collector removes it with the Migration and the operator can find it after a restart.
Every pod is Pod Security "restricted": non-root, no privilege escalation, all capabilities
dropped, seccomp RuntimeDefault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .api import GROUP, KIND, VERSION, MigrationSpec

MANAGED_BY = "dbmigrate"
LABEL_MIGRATION = f"{GROUP}/migration"
LABEL_COMPONENT = "app.kubernetes.io/component"
PG_PORT = 5432
# uid/gid of the postgres user in the Debian-based official images.
PG_UID = 999
DEFAULT_SIZE_GI = 1
HEADROOM = 1.25  # the copy is freshly packed, but indexes are rebuilt and WAL needs room


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str


def names(migration: str) -> dict[str, str]:
    """Child names, derived from the Migration's name (CRD keeps it <= 40 chars)."""
    return {
        "statefulset": f"{migration}-target",
        "service": f"{migration}-target",
        "headless": f"{migration}-target-hl",
        "secret": f"{migration}-target-credentials",
        "networkpolicy": f"{migration}-target",
        "copyjob": f"{migration}-copy",
        "schemajob": f"{migration}-schema",
        "smokejob": f"{migration}-smoke",
        "source": f"{migration}-source",
    }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "postgresql",
        LABEL_COMPONENT: component,
        LABEL_MIGRATION: owner.name,
    }


# The new server's volume goes with its StatefulSet (TTL expiry, Migration deleted) while the
# Migration owns it; a released (production) server keeps it (kube.release_owned).
TARGET_PVC_RETENTION = {"whenDeleted": "Delete", "whenScaled": "Retain"}


def _meta(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    """What makes a child the Migration's: deleted with it, by the garbage collector."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": owner.name, "uid": owner.uid,
            "controller": True, "blockOwnerDeletion": True}


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def quantity_bytes(q: str) -> int | None:
    m = _QUANTITY.match(q.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _FACTORS[m.group(2)])


def target_size(spec: MigrationSpec, source_size: str | None) -> str:
    """spec.target.storage.size, else the source volume plus headroom, in whole Gi."""
    if spec.target.storage_size:
        return spec.target.storage_size
    b = quantity_bytes(source_size) if source_size else None
    if not b:
        return f"{DEFAULT_SIZE_GI}Gi"
    return f"{max(DEFAULT_SIZE_GI, math.ceil(b * HEADROOM / 2**30))}Gi"


def restricted_pod_security() -> dict[str, Any]:
    # OnRootMismatch: no recursive ownership walk of a large data volume on every mount.
    return {"runAsNonRoot": True, "runAsUser": PG_UID, "runAsGroup": PG_UID, "fsGroup": PG_UID,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True}


def server_args(wal_level: str) -> list[str]:
    """The target server's command line. "minimal": a load writes no WAL for the rows of a
    table it creates or truncates (markedly faster), and nothing can replicate from it.
    "logical": it can subscribe from the source, and feed replicas and backups afterwards."""
    if wal_level == "minimal":
        return ["-c", "wal_level=minimal", "-c", "max_wal_senders=0"]
    return ["-c", "wal_level=logical", "-c", "max_wal_senders=10", "-c", "max_replication_slots=10"]


def wal_level_of(args: Sequence[str]) -> str | None:
    """The wal_level a server command line (``server_args``) sets, None if none."""
    for a in args:
        if a.startswith("wal_level="):
            return a.split("=", 1)[1]
    return None


def server_args_patch(wal_level: str) -> dict[str, Any]:
    """Strategic merge patch of the target StatefulSet: the server restarts with ``wal_level``
    (containers merge by name; the args list is replaced)."""
    return {"spec": {"template": {"spec": {"containers": [
        {"name": "postgres", "args": server_args(wal_level)}]}}}}


def _server_args(spec: MigrationSpec) -> list[str]:
    # A test server is a throw-away copy; the execute target is the new production server (it
    # may load without WAL first: executeplan.py, strategy dump).
    return server_args("minimal" if spec.mode == "test" else "logical")


def credentials_secret(owner: Owner, username: str, password: str) -> dict[str, Any]:
    n = names(owner.name)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(owner, n["secret"], "target"),
            "type": "Opaque", "stringData": {"username": username, "password": password}}


def _resources(r: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """A container's resources, copied (the manifest must not share the config's dicts)."""
    return {k: dict(v) for k, v in r.items()}


def target_statefulset(owner: Owner, spec: MigrationSpec, image: str, source_size: str | None,
                       source_storage_class: str | None,
                       source_resources: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """``source_resources``: the source server container's, the default when the spec sets
    none: the new server gets what the old one had, not a LimitRange's defaults."""
    n = names(owner.name)
    lbl = labels(owner, "target")
    secret_ref = n["secret"]
    env = [
        {"name": "POSTGRES_USER", "valueFrom": {"secretKeyRef": {"name": secret_ref, "key": "username"}}},
        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_ref, "key": "password"}}},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
    ]
    container: dict[str, Any] = {
        "name": "postgres",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": _server_args(spec),
        "env": env,
        "ports": [{"name": "postgres", "containerPort": PG_PORT}],
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", 'pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER"']},
            "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3,
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                         {"name": "run", "mountPath": "/var/run/postgresql"}],
    }
    wanted = spec.target.resources or source_resources
    if wanted:
        container["resources"] = _resources(wanted)
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": target_size(spec, source_size)}},
    }
    storage_class = spec.target.storage_class_name or source_storage_class
    if storage_class:
        pvc_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": _meta(owner, n["statefulset"], "target"),
        "spec": {
            "serviceName": n["headless"],
            "replicas": 1,
            "selector": {"matchLabels": lbl},
            "template": {
                "metadata": {"labels": lbl},
                "spec": {
                    "securityContext": restricted_pod_security(),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "run", "emptyDir": {}}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": lbl}, "spec": pvc_spec}],
            # The source's volume is never ours to touch.
            "persistentVolumeClaimRetentionPolicy": dict(TARGET_PVC_RETENTION),
        },
    }


def target_services(owner: Owner) -> list[dict[str, Any]]:
    n = names(owner.name)
    lbl = labels(owner, "target")
    port = [{"name": "postgres", "port": PG_PORT, "targetPort": "postgres"}]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, n["headless"], "target"),
         "spec": {"clusterIP": "None", "selector": lbl, "ports": port, "publishNotReadyAddresses": True}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, n["service"], "target"),
         "spec": {"type": "ClusterIP", "selector": lbl, "ports": port}},
    ]


def target_network_policy(owner: Owner, operator_namespace: str | None) -> dict[str, Any]:
    """Only pods of the Migration's namespace (and the operator) may reach the target."""
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    if operator_namespace and operator_namespace != owner.namespace:
        peers.append({"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": operator_namespace}}})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(owner, names(owner.name)["networkpolicy"], "target"),
        "spec": {
            "podSelector": {"matchLabels": labels(owner, "target")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PG_PORT}]}],
        },
    }


def target_objects(owner: Owner, spec: MigrationSpec, image: str, source_size: str | None,
                   source_storage_class: str | None, operator_namespace: str | None,
                   username: str, password: str,
                   source_resources: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Everything Provisioning creates, in creation order (the Secret before its users)."""
    return [
        credentials_secret(owner, username, password),
        *target_services(owner),
        target_network_policy(owner, operator_namespace),
        target_statefulset(owner, spec, image, source_size, source_storage_class, source_resources),
    ]


def source_service(owner: Owner, sts_selector: dict[str, str], port: int,
                   target_port: int | str) -> dict[str, Any]:
    """Execute mode reaches the old server through this Service, never through the source's
    own: that one moves to the new server at the point of no return, and the steps after it
    (cleanup of slots and publications on the old server) and the subscription's connection
    must still reach the old one. It selects exactly the source StatefulSet's pods."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, names(owner.name)["source"], "source"),
            "spec": {"type": "ClusterIP", "selector": dict(sts_selector), "publishNotReadyAddresses": True,
                     "ports": [{"name": "postgres", "port": port, "targetPort": target_port}]}}


def source_host(owner: Owner, spec: MigrationSpec) -> str:
    """Where the operator and its Jobs reach the source (see source_service)."""
    if spec.mode == "execute":
        return service_host(names(owner.name)["source"], owner.namespace)
    return service_host(spec.source.service_name, owner.namespace)


def service_host(service: str, namespace: str) -> str:
    # In a pod the resolver's search path completes this to <svc>.<ns>.svc.<cluster-domain>.
    return f"{service}.{namespace}.svc"


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


EXIT_VERIFY_DIFF = 2  # jobmain's exit code when the copy differs: retrying will not help


def copy_job(owner: Owner, spec: MigrationSpec, worker_image: str, jobs: int = 2,
             command: str = "copy-verify", name_key: str = "copyjob",
             job_resources: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The Job that copies every database into the target and verifies the copy (or, with
    command "schema", copies roles and schema only: an online execute's first step).

    It runs the worker image (the target version's client tools + the dbmigrate engine), gets
    both logins from Secrets by reference, and reports through its termination message."""
    n = names(owner.name)
    src = spec.source
    # The execute copy (strategy dump) runs while the source refuses writes: its applications
    # can only read, and each second of copy is a second of outage, so it may take every free
    # connection slot, not the half a test copy leaves them (budget.py).
    fenced = ["--source-share", "1"] if spec.mode == "execute" and command == "copy-verify" else []
    env = [
        {"name": "SOURCE_HOST", "value": source_host(owner, spec)},
        {"name": "SOURCE_PORT", "value": str(src.port)},
        _secret_env("SOURCE_USER", src.credentials_secret_name, src.username_key),
        _secret_env("SOURCE_PASSWORD", src.credentials_secret_name, src.password_key),
        {"name": "TARGET_HOST", "value": service_host(n["service"], owner.namespace)},
        {"name": "TARGET_PORT", "value": str(PG_PORT)},
        _secret_env("TARGET_USER", n["secret"], "username"),
        _secret_env("TARGET_PASSWORD", n["secret"], "password"),
    ]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(owner, n[name_key], "copy"),
        "spec": {
            "backoffLimit": 3,
            # A verification difference is a result, not a transient failure.
            "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                "containerName": "copy", "operator": "In", "values": [EXIT_VERIFY_DIFF]}}]},
            "template": {
                "metadata": {"labels": labels(owner, "copy")},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": restricted_pod_security(),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [{
                        "name": "copy",
                        "image": worker_image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-m", "dbmigrate.engines.postgres.jobmain", command,
                                    "--workdir", "/work", "--jobs", str(jobs), *fenced],
                        "env": env,
                        "securityContext": restricted_container_security(),
                        "terminationMessagePolicy": "File",
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                        # Requests, for namespaces whose ResourceQuota demands them (config.py).
                        **({"resources": _resources(job_resources)} if job_resources else {}),
                    }],
                    # Dumps are transient; a node-local scratch volume is enough.
                    "volumes": [{"name": "work", "emptyDir": {}}],
                },
            },
        },
    }


def _login_env(owner: Owner) -> list[dict[str, Any]]:
    """The test server's address and login, as libpq variables (password by reference)."""
    n = names(owner.name)
    return [
        {"name": "PGHOST", "value": service_host(n["service"], owner.namespace)},
        {"name": "PGPORT", "value": str(PG_PORT)},
        _secret_env("PGUSER", n["secret"], "username"),
        _secret_env("PGPASSWORD", n["secret"], "password"),
    ]


# $1: the script's path, $2: what to say when it is not there (stderr: the termination message).
_SMOKE_SCRIPT = 'if [ ! -r "$1" ]; then echo "$2" >&2; exit 1; fi; exec psql -X -v ON_ERROR_STOP=1 -f "$1"'


def smoke_job(owner: Owner, spec: MigrationSpec, target_image: str,
              job_resources: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The user's smoke test against the test server: their SQL script run by psql from the
    target image (with ``job_resources``), or their own pod template with the login injected
    into every container (their resources, as they wrote them)."""
    smoke = spec.test.smoke
    assert smoke is not None
    env = _login_env(owner)
    pod: dict[str, Any]
    if smoke.config_map:
        env = [*env, {"name": "PGDATABASE", "value": smoke.database}]
        pod = {
            "securityContext": restricted_pod_security(),
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "smoke", "image": target_image, "imagePullPolicy": "IfNotPresent",
                # The ConfigMap is mounted optional, so that a missing one (or key) fails the
                # test at once with a message that says so: required, the pod would wait in
                # ContainerCreating until the timeout, its status silent about why.
                "command": ["sh", "-c", _SMOKE_SCRIPT, "smoke", f"/smoke/{smoke.key}",
                            f'the smoke test\'s ConfigMap "{smoke.config_map}" does not exist in this '
                            f'namespace or has no key "{smoke.key}": create it, or fix '
                            f'spec.test.smokeTest.sql'],
                "env": env,
                "securityContext": restricted_container_security(),
                "volumeMounts": [{"name": "smoke", "mountPath": "/smoke", "readOnly": True}],
                # psql's last error lines become the termination message: the condition shows them.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                **({"resources": _resources(job_resources)} if job_resources else {}),
            }],
            "volumes": [{"name": "smoke", "configMap": {"name": smoke.config_map, "optional": True}}],
        }
        template: dict[str, Any] = {"metadata": {"labels": labels(owner, "smoke-test")}, "spec": pod}
    else:
        user = dict(smoke.template or {})
        pod = dict(user.get("spec") or {})
        containers = []
        for c in pod.get("containers") or []:
            c = dict(c)
            c["env"] = [*(c.get("env") or []), *env]
            c.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
            containers.append(c)
        pod["containers"] = containers
        meta = dict(user.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **labels(owner, "smoke-test")}
        template = {"metadata": meta, "spec": pod}
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(owner, names(owner.name)["smokejob"], "smoke-test"),
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": int(smoke.timeout.total_seconds()),
                 "template": template},
    }
