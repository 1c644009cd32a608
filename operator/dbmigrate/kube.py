"""The only module that talks to the Kubernetes API (import-linter enforces it).

The official `kubernetes` client is synchronous; every call runs in a worker thread so the
kopf event loop never blocks. Reads return the plain data of `observed.py`; nothing here
decides anything.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import podstatus, resources
from .api import GROUP, KIND, PLURAL, VERSION
from .observed import (
    ContainerInfo,
    JobObservation,
    PeerMigration,
    SecretInfo,
    ServiceInfo,
    SourceObservation,
    StatefulSetInfo,
    TargetObservation,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

_lock = threading.Lock()
_client: Any = None


def _api() -> Any:
    """One ApiClient per process: in-cluster config when in a pod, else $KUBECONFIG."""
    global _client
    with _lock:
        if _client is None:
            cfg: Any = kubernetes.config  # the loaders are untyped
            try:
                cfg.load_incluster_config()
            except cfg.ConfigException:
                cfg.load_kube_config()
            _client = kubernetes.client.ApiClient()
        return _client


async def _call(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def _or_none(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


async def read_source(namespace: str, sts_name: str, svc_name: str, secret_name: str) -> SourceObservation:
    apps = kubernetes.client.AppsV1Api(_api())
    core = kubernetes.client.CoreV1Api(_api())

    def read() -> SourceObservation:
        sts = _or_none(lambda: apps.read_namespaced_stateful_set(sts_name, namespace))
        svc = _or_none(lambda: core.read_namespaced_service(svc_name, namespace))
        sec = _or_none(lambda: core.read_namespaced_secret(secret_name, namespace))
        return SourceObservation(
            namespace=namespace,
            statefulset=_sts_info(sts) if sts is not None else None,
            service=_svc_info(svc) if svc is not None else None,
            # Only the key names leave this function: values never reach planner or status.
            secret=SecretInfo(secret_name, frozenset((sec.data or {}).keys())) if sec else None,
        )

    return await _call(read)


def _container_resources(r: Any) -> dict[str, dict[str, str]]:
    if r is None:
        return {}
    out = {"requests": {k: str(v) for k, v in (r.requests or {}).items()},
           "limits": {k: str(v) for k, v in (r.limits or {}).items()}}
    return {k: v for k, v in out.items() if v}


def _sts_info(sts: Any) -> StatefulSetInfo:
    tmpl = sts.spec.template
    containers = tuple(ContainerInfo(c.name, c.image or "", _container_resources(c.resources))
                       for c in (tmpl.spec.containers or []))
    size = sc = None
    vcts = sts.spec.volume_claim_templates or []
    if vcts:
        req = (vcts[0].spec.resources.requests or {}) if vcts[0].spec.resources else {}
        size = req.get("storage")
        sc = vcts[0].spec.storage_class_name
    return StatefulSetInfo(
        name=sts.metadata.name,
        containers=containers,
        pod_labels=dict(tmpl.metadata.labels or {}) if tmpl.metadata else {},
        selector=dict((sts.spec.selector.match_labels or {}) if sts.spec.selector else {}),
        replicas=sts.spec.replicas if sts.spec.replicas is not None else 1,
        ready_replicas=(sts.status.ready_replicas or 0) if sts.status else 0,
        volume_size=size,
        storage_class_name=sc,
    )


def _svc_info(svc: Any) -> ServiceInfo:
    return ServiceInfo(
        name=svc.metadata.name,
        selector=dict(svc.spec.selector or {}),
        ports=tuple(p.port for p in (svc.spec.ports or [])),
        target_ports={p.port: p.target_port if p.target_port is not None else p.port for p in (svc.spec.ports or [])},
    )


async def patch_status(namespace: str, name: str, status: dict[str, Any]) -> int:
    """Merge-patch the status subresource (only the fields given); returns the object's new
    resourceVersion (0 if unreadable)."""
    co = kubernetes.client.CustomObjectsApi(_api())
    obj: Any = await _call(lambda: co.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}))
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return 0


async def post_event(namespace: str, name: str, uid: str, type_: str, reason: str, message: str,
                     component: str = "dbmigrate") -> None:
    """A core/v1 Event on the Migration (what `kubectl describe` shows)."""
    core = kubernetes.client.CoreV1Api(_api())
    now = datetime.now(UTC)
    ev = kubernetes.client.CoreV1Event(
        metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
        involved_object=kubernetes.client.V1ObjectReference(
            api_version=f"{GROUP}/{VERSION}", kind=KIND, name=name, namespace=namespace, uid=uid),
        type=type_, reason=reason, message=message[:1024],
        first_timestamp=now, last_timestamp=now, count=1,
        source=kubernetes.client.V1EventSource(component=component),
        reporting_component=component, reporting_instance=component,
    )
    try:
        await _call(lambda: core.create_namespaced_event(namespace, ev))
    except ApiException as e:
        # Events are best-effort (e.g. the namespace is terminating): never fail a reconcile.
        log.warning("could not post event %s on %s/%s: %s", reason, namespace, name, e.reason)


def _first_pod(core: Any, namespace: str, labels: dict[str, str]) -> dict[str, Any] | None:
    """The (single) pod of a StatefulSet, as the API's JSON (camelCase), or None."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = list(core.list_namespaced_pod(namespace, label_selector=selector).items)
    if not pods:
        return None
    found: dict[str, Any] = _api().sanitize_for_serialization(sorted(pods, key=lambda p: p.metadata.name)[0])
    return found


async def read_target(namespace: str, child_names: dict[str, str]) -> TargetObservation:
    """Which target children exist, and how many target pods are ready."""
    apps = kubernetes.client.AppsV1Api(_api())
    core = kubernetes.client.CoreV1Api(_api())
    net = kubernetes.client.NetworkingV1Api(_api())

    def read() -> TargetObservation:
        present: set[str] = set()
        ready, wal, rolled, why = 0, None, True, None
        sts = _or_none(lambda: apps.read_namespaced_stateful_set(child_names["statefulset"], namespace))
        if sts is not None:
            present.add("StatefulSet")
            st = sts.status
            ready = (st.ready_replicas or 0) if st else 0
            pod = sts.spec.template.spec if sts.spec else None
            server = next((c for c in (pod.containers if pod else []) if c.name == "postgres"), None)
            wal = resources.wal_level_of(server.args or []) if server else None
            # The controller saw the last template change and the pod runs it.
            generation = (sts.metadata.generation if sts.metadata else None) or 0
            rolled = st is not None and (st.observed_generation or 0) >= generation \
                and st.update_revision == st.current_revision
            if ready < 1 and sts.spec and sts.spec.selector:
                why = podstatus.problem(_first_pod(core, namespace, sts.spec.selector.match_labels or {}))
        if _or_none(lambda: core.read_namespaced_secret(child_names["secret"], namespace)) is not None:
            present.add("Secret")
        if _or_none(lambda: core.read_namespaced_service(child_names["service"], namespace)) is not None:
            present.add("Service")
        if _or_none(lambda: core.read_namespaced_service(child_names["headless"], namespace)) is not None:
            present.add("Service/headless")
        if _or_none(lambda: net.read_namespaced_network_policy(child_names["networkpolicy"], namespace)):
            present.add("NetworkPolicy")
        return TargetObservation(present=frozenset(present), ready_replicas=ready, wal_level=wal,
                                 rolled_out=rolled, pod_problem=why)

    return await _call(read)


async def ensure(obj: dict[str, Any]) -> bool:
    """Create obj unless it exists (safe to repeat); True when this call created it.

    Existing children are never updated: what was provisioned stays as it was (the target's
    generated password in particular must not change under a running server)."""
    kind, ns = obj["kind"], obj["metadata"]["namespace"]
    body: Any = obj  # the client serialises plain dicts; its stubs only name model classes
    creators: dict[str, Callable[[], Any]] = {
        "Secret": lambda: kubernetes.client.CoreV1Api(_api()).create_namespaced_secret(ns, body),
        "Service": lambda: kubernetes.client.CoreV1Api(_api()).create_namespaced_service(ns, body),
        "StatefulSet": lambda: kubernetes.client.AppsV1Api(_api()).create_namespaced_stateful_set(ns, body),
        "NetworkPolicy": lambda: kubernetes.client.NetworkingV1Api(_api()).create_namespaced_network_policy(
            ns, body),
        "Job": lambda: kubernetes.client.BatchV1Api(_api()).create_namespaced_job(ns, body),
    }

    def create() -> bool:
        try:
            creators[kind]()
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    return await _call(create)


async def read_credentials(namespace: str, secret: str, username_key: str, password_key: str) -> tuple[str, str]:
    """The login stored in a Secret. The values go straight to the engine, never to status,
    events or logs."""
    core = kubernetes.client.CoreV1Api(_api())

    def read() -> tuple[str, str]:
        data = core.read_namespaced_secret(secret, namespace).data or {}
        return (base64.b64decode(data[username_key]).decode(), base64.b64decode(data[password_key]).decode())

    return await _call(read)


async def read_credentials_if_any(namespace: str, secret: str) -> tuple[str, str] | None:
    """The new server's login (keys username and password), or None once its Secret is gone."""
    core = kubernetes.client.CoreV1Api(_api())
    if await _call(lambda: _or_none(lambda: core.read_namespaced_secret(secret, namespace))) is None:
        return None
    return await read_credentials(namespace, secret, "username", "password")


async def read_job(namespace: str, name: str) -> JobObservation | None:
    """The copy Job's state, plus the JSON result its last pod left as termination message."""
    batch = kubernetes.client.BatchV1Api(_api())
    core = kubernetes.client.CoreV1Api(_api())

    def read() -> JobObservation | None:
        job = _or_none(lambda: batch.read_namespaced_job(name, namespace))
        if job is None:
            return None
        st = job.status
        conds = {c.type: c for c in (st.conditions or []) if c.status == "True"} if st else {}

        def pods_of_this_job() -> list[Any]:
            # By owner, not only by name: a Job deleted and created again under its name (a
            # smoke test run again) leaves the old one's pods behind for a while.
            uid = job.metadata.uid if job.metadata else None
            pods: list[Any] = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
            return [p for p in pods if any(o.uid == uid for o in (p.metadata.owner_references or []))]

        failed = "Failed" in conds
        pods = pods_of_this_job() if conds or (st is not None and (st.failed or st.active)) else []
        result = last_attempt = None
        if "Complete" in conds or failed:
            result = _newest_report(pods)
        elif st is not None and st.failed:
            # Active again after a failed attempt: what it said, while the backoff retries.
            last_attempt = _newest_report(pods)
        why = None
        if not conds and st is not None and st.active and pods:
            # A pod that cannot start leaves the Job active for ever (no backoff counts it).
            newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
            why = podstatus.problem(_api().sanitize_for_serialization(newest), "copy", podstatus.WORKER_IMAGE)
        return JobObservation(
            active=(st.active or 0) if st else 0,
            succeeded="Complete" in conds,
            failed=failed,
            failure=(conds["Failed"].message or conds["Failed"].reason or "") if failed else "",
            result=result,
            pod_problem=why,
            last_attempt=last_attempt,
        )

    return await _call(read)


def _newest_report(pods: list[Any]) -> dict[str, object] | None:
    """The termination message of the newest pod that left one (our Jobs write JSON there)."""
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            term = cs.state.terminated if cs.state else None
            if term is not None and term.message:
                return _json_or_none(term.message)
    return None


def _json_or_none(text: str) -> dict[str, object] | None:
    """Our Jobs leave JSON; a user's smoke test leaves its last log lines ({"output": ...})."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"output": text.strip()[-1000:]}
    return value if isinstance(value, dict) else {"output": str(value)}


async def delete_owned(namespace: str, kind: str, name: str, owner_uid: str) -> bool:
    """Delete a child only if it is controlled by the given Migration (never a source object).

    The per-kind calls are spelled out (not built with getattr) on purpose: the least-privilege
    test reads this file to derive the RBAC the operator needs."""
    apis: dict[str, tuple[Callable[[], Any], Callable[..., Any]]] = {
        "StatefulSet": (lambda: kubernetes.client.AppsV1Api(_api()).read_namespaced_stateful_set(name, namespace),
                        kubernetes.client.AppsV1Api(_api()).delete_namespaced_stateful_set),
        "Service": (lambda: kubernetes.client.CoreV1Api(_api()).read_namespaced_service(name, namespace),
                    kubernetes.client.CoreV1Api(_api()).delete_namespaced_service),
        "Secret": (lambda: kubernetes.client.CoreV1Api(_api()).read_namespaced_secret(name, namespace),
                   kubernetes.client.CoreV1Api(_api()).delete_namespaced_secret),
        "NetworkPolicy": (
            lambda: kubernetes.client.NetworkingV1Api(_api()).read_namespaced_network_policy(name, namespace),
            kubernetes.client.NetworkingV1Api(_api()).delete_namespaced_network_policy),
        "Job": (lambda: kubernetes.client.BatchV1Api(_api()).read_namespaced_job(name, namespace),
                kubernetes.client.BatchV1Api(_api()).delete_namespaced_job),
    }
    read, delete = apis[kind]

    def run() -> bool:
        obj = _or_none(read)
        if obj is None:
            return False
        refs = obj.metadata.owner_references or []
        if not any(r.uid == owner_uid and r.controller for r in refs):
            log.warning("not deleting %s %s/%s: not controlled by Migration %s", kind, namespace, name, owner_uid)
            return False
        body = kubernetes.client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=kubernetes.client.V1Preconditions(uid=obj.metadata.uid))
        try:
            delete(name, namespace, body=body)
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    return await _call(run)


async def read_service_selector(namespace: str, name: str) -> dict[str, str]:
    core = kubernetes.client.CoreV1Api(_api())
    svc: Any = await _call(lambda: _or_none(lambda: core.read_namespaced_service(name, namespace)))
    return dict(svc.spec.selector or {}) if svc is not None else {}


def repoint_service_sync(namespace: str, name: str, selector: dict[str, str]) -> None:
    """Replace (not merge) the Service's selector: the point of no return of an execute.
    Synchronous on purpose: it runs inside the engine's switchover, between catch-up and cleanup."""
    core = kubernetes.client.CoreV1Api(_api())
    core.patch_namespaced_service(name, namespace, [{"op": "replace", "path": "/spec/selector", "value": selector}])


async def repoint_service(namespace: str, name: str, selector: dict[str, str]) -> None:
    await _call(lambda: repoint_service_sync(namespace, name, selector))


async def patch_statefulset(namespace: str, name: str, patch: dict[str, Any]) -> None:
    """Strategic merge patch (e.g. ``resources.server_args_patch``)."""
    apps = kubernetes.client.AppsV1Api(_api())
    await _call(lambda: apps.patch_namespaced_stateful_set(name, namespace, patch))


async def scale_statefulset(namespace: str, name: str, replicas: int) -> None:
    await patch_statefulset(namespace, name, {"spec": {"replicas": replicas}})


def _read_patch(namespace: str, kind: str, name: str) -> tuple[Callable[[], Any], Callable[..., Any]]:
    """(read, patch) of a child the Migration may own or release."""
    apis: dict[str, tuple[Callable[[], Any], Callable[..., Any]]] = {
        "StatefulSet": (lambda: kubernetes.client.AppsV1Api(_api()).read_namespaced_stateful_set(name, namespace),
                        kubernetes.client.AppsV1Api(_api()).patch_namespaced_stateful_set),
        "Service": (lambda: kubernetes.client.CoreV1Api(_api()).read_namespaced_service(name, namespace),
                    kubernetes.client.CoreV1Api(_api()).patch_namespaced_service),
        "Secret": (lambda: kubernetes.client.CoreV1Api(_api()).read_namespaced_secret(name, namespace),
                   kubernetes.client.CoreV1Api(_api()).patch_namespaced_secret),
        "NetworkPolicy": (
            lambda: kubernetes.client.NetworkingV1Api(_api()).read_namespaced_network_policy(name, namespace),
            kubernetes.client.NetworkingV1Api(_api()).patch_namespaced_network_policy),
    }
    return apis[kind]


async def _rewrite_owners(namespace: str, kind: str, name: str,
                          owners: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None],
                          retention: dict[str, str]) -> bool:
    """Replace a child's ownerReferences with ``owners(current)`` (None: leave it as it is),
    and a StatefulSet's volume retention with ``retention``. True when it changed."""
    read, patch = _read_patch(namespace, kind, name)

    def run() -> bool:
        obj = _or_none(read)
        if obj is None:
            return False
        new = owners([_api().sanitize_for_serialization(r) for r in obj.metadata.owner_references or []])
        if new is None:
            return False
        body: Any = [{"op": "test", "path": "/metadata/uid", "value": obj.metadata.uid},
                     {"op": "replace", "path": "/metadata/ownerReferences", "value": new}]
        if kind == "StatefulSet":
            body.append({"op": "replace", "path": "/spec/persistentVolumeClaimRetentionPolicy", "value": retention})
        patch(name, namespace, body)
        return True

    return await _call(run)


async def release_owned(namespace: str, kind: str, name: str, owner_uid: str) -> bool:
    """Drop the Migration's ownerReference from a child it controls, so that deleting the
    Migration no longer deletes it (the new production server after an execute), and keep a
    StatefulSet's volume should it ever be deleted (production data now)."""
    def without(refs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        keep = [r for r in refs if r.get("uid") != owner_uid]
        return keep if len(keep) < len(refs) else None

    return await _rewrite_owners(namespace, kind, name, without, {"whenDeleted": "Retain", "whenScaled": "Retain"})


async def adopt_owned(namespace: str, kind: str, name: str, owner_ref: dict[str, Any]) -> bool:
    """Undo ``release_owned`` (a switchover that released the new server did not go through):
    the child belongs to the Migration again, and goes with it."""
    def with_owner(refs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        return None if any(r.get("uid") == owner_ref["uid"] for r in refs) else [*refs, owner_ref]

    return await _rewrite_owners(namespace, kind, name, with_owner, dict(resources.TARGET_PVC_RETENTION))


async def being_deleted(namespace: str, kind: str, name: str) -> bool:
    """The object is gone or has a deletionTimestamp (the garbage collector is at it)."""
    read, _ = _read_patch(namespace, kind, name)
    obj: Any = await _call(lambda: _or_none(read))
    return obj is None or obj.metadata.deletion_timestamp is not None


async def list_peers(namespace: str) -> list[PeerMigration]:
    co = kubernetes.client.CustomObjectsApi(_api())

    def read() -> list[PeerMigration]:
        listing: Any = co.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items: list[dict[str, Any]] = listing.get("items", [])
        return [PeerMigration(
            name=i["metadata"]["name"],
            source=str(((i.get("spec") or {}).get("source") or {}).get("statefulSetName", "")),
            phase=str((i.get("status") or {}).get("phase") or "Pending"),
            created=str(i["metadata"].get("creationTimestamp") or ""),
            target_version=str(((i.get("spec") or {}).get("target") or {}).get("version", "")),
            test_passed_at=str((i.get("status") or {}).get("testPassedAt") or ""),
        ) for i in items if not i["metadata"].get("deletionTimestamp")]

    return await _call(read)
