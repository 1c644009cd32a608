"""kopf glue: every trigger (create, resume, spec update, timer) runs the same `reconcile()`.

Thin on purpose: read the world (kube.py), decide (planner.py), write status and events
(kube.py). Durable state lives in the Migration's status, never in kopf's per-handler memory,
so a restarted operator simply reconciles again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import kopf

from . import kube, metrics, planner, resources
from .api import GROUP, PLURAL, VERSION, MigrationSpec, SpecError, parse_spec
from .config import Config
from .engines.base import Finding
from .observed import SourceObservation

FINALIZER = f"{GROUP}/finalizer"
CONFIG = Config.from_env()

# kopf serialises change handlers per object, but timers run beside them: one lock per
# Migration keeps two reconciles of the same object from interleaving.
_locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # Keep kopf's bookkeeping in status, not in annotations: GitOps tools then see no drift
    # in metadata (the CRD keeps status.kopf with preserve-unknown-fields).
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    # Watches can go silent: restart them if nothing arrives for a while.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 360
    settings.networking.request_timeout = 60
    settings.execution.default_backoff = 10
    settings.posting.enabled = False  # we post our own, meaningful Events
    if CONFIG.metrics_port:
        metrics.serve(CONFIG.metrics_port)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def reconcile(body: kopf.Body, logger: kopf.Logger | logging.LoggerAdapter[Any]) -> None:
    try:
        await _reconcile(body, logger)
    except Exception:
        metrics.RECONCILES.labels("error").inc()
        raise
    metrics.RECONCILES.labels("ok").inc()


async def _reconcile(body: kopf.Body, logger: kopf.Logger | logging.LoggerAdapter[Any]) -> None:
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    if meta.get("deletionTimestamp"):
        return
    async with _locks[uid]:
        spec = dict(body.get("spec") or {})
        status = dict(body.get("status") or {})
        generation = int(meta.get("generation") or 0)
        child_names = resources.names(name)
        observation = target = None
        parsed: MigrationSpec | None = None
        try:
            parsed = parse_spec(spec)
            observation = await kube.read_source(
                ns, parsed.source.stateful_set_name, parsed.source.service_name,
                parsed.source.credentials_secret_name)
            target = await kube.read_target(ns, child_names)
            target = dataclasses.replace(target, job=await kube.read_job(ns, child_names["copyjob"]))
            if status.get("phase") == "Copying" and target.job is not None and target.job.active:
                target = dataclasses.replace(target, bytes_copied=await _target_bytes(ns, child_names))
        except SpecError:
            pass  # the planner reports it as a condition
        result = planner.plan(spec, status, generation, observation, datetime.now(UTC),
                              target=target, images=CONFIG.images, worker_images=CONFIG.worker_images,
                              name=name, namespace=ns)
        status = await _write(ns, name, uid, status, result, logger)
        metrics.observe(uid, ns, name, str(spec.get("mode", "test")), status)

        if isinstance(result.action, planner.EnsureTarget) and parsed and observation:
            await _ensure_target(ns, name, uid, parsed, observation, result.action.image, logger)
        elif isinstance(result.action, planner.CreateCopyJob) and parsed:
            owner = resources.Owner(name=name, namespace=ns, uid=uid)
            if await kube.ensure(resources.copy_job(owner, parsed, result.action.worker_image)):
                logger.info("created Job %s", child_names["copyjob"])
        elif isinstance(result.action, planner.ExpireTarget):
            for kind, key in (("Job", "copyjob"), ("StatefulSet", "statefulset"), ("Service", "service"),
                              ("Service", "headless"), ("NetworkPolicy", "networkpolicy"), ("Secret", "secret")):
                if await kube.delete_owned(ns, kind, child_names[key], uid):
                    logger.info("deleted %s %s (test server expired)", kind, child_names[key])
        elif isinstance(result.action, planner.RunPreflight) and parsed:
            findings, error, source_bytes = await _run_preflight(ns, parsed, child_names)
            after = planner.after_preflight(status, generation, datetime.now(UTC), findings, error,
                                            source_bytes)
            status = await _write(ns, name, uid, status, after, logger)
            metrics.observe(uid, ns, name, str(spec.get("mode", "test")), status)


async def _write(ns: str, name: str, uid: str, status: dict[str, Any], result: planner.Plan,
                 logger: kopf.Logger | logging.LoggerAdapter[Any]) -> dict[str, Any]:
    """Patch only what changed, post the plan's events; return the status as now stored."""
    changes = planner.status_changes(status, result.status)
    if changes:
        await kube.patch_status(ns, name, changes)
        logger.info("status: phase=%s %s", result.status.get("phase"), result.status.get("message", ""))
    for ev in result.events:
        await kube.post_event(ns, name, uid, ev.type, ev.reason, ev.message)
    return {**status, **changes}


async def _ensure_target(ns: str, name: str, uid: str, spec: MigrationSpec, obs: SourceObservation,
                         image: str, logger: kopf.Logger | logging.LoggerAdapter[Any]) -> None:
    owner = resources.Owner(name=name, namespace=ns, uid=uid)
    sts = obs.statefulset
    objects = resources.target_objects(
        owner, spec, image,
        source_size=sts.volume_size if sts else None,
        source_storage_class=sts.storage_class_name if sts else None,
        operator_namespace=CONFIG.operator_namespace,
        # Used only if the Secret does not exist yet: ensure() never overwrites.
        username="postgres", password=secrets.token_urlsafe(24))
    for obj in objects:
        if await kube.ensure(obj):
            logger.info("created %s %s", obj["kind"], obj["metadata"]["name"])


async def _run_preflight(ns: str, spec: MigrationSpec, child_names: dict[str, str]
                         ) -> tuple[list[Finding] | None, str | None, int | None]:
    """Connect to source and target through their Services and run the engine's check.
    Returns (findings, None, source bytes) or (None, a message safe to publish, None)."""
    from .engines.postgres import checks, jobmain
    from .engines.postgres.conninfo import ConnInfo

    try:
        su, sp = await kube.read_credentials(ns, spec.source.credentials_secret_name,
                                             spec.source.username_key, spec.source.password_key)
        tu, tp = await kube.read_credentials(ns, child_names["secret"], "username", "password")
    except Exception as e:  # missing Secret/key: say which, never the value
        return None, f"cannot read credentials ({type(e).__name__})", None
    source = ConnInfo(host=resources.service_host(spec.source.service_name, ns), port=spec.source.port,
                      user=su, password=sp)
    target = ConnInfo(host=resources.service_host(child_names["service"], ns), port=resources.PG_PORT,
                      user=tu, password=tp)

    def run() -> tuple[list[Finding], int]:
        return checks.check(source, checks.TargetInfo.from_server(target)), jobmain.database_bytes(source)

    try:
        findings, size = await asyncio.wait_for(asyncio.to_thread(run), timeout=CONFIG.preflight_timeout)
        return findings, None, size
    except Exception as e:  # unreachable server, auth failure, timeout: retried next reconcile
        return None, _safe_error(e, sp, tp), None


def _safe_error(e: BaseException, *secret_values: str) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    for value in secret_values:
        text = text.replace(value, "***")
    return text


async def _target_bytes(ns: str, child_names: dict[str, str]) -> int | None:
    """How much the target holds now: the copy's progress (None when it cannot be read)."""
    from .engines.postgres import jobmain
    from .engines.postgres.conninfo import ConnInfo

    try:
        user, password = await kube.read_credentials(ns, child_names["secret"], "username", "password")
        target = ConnInfo(host=resources.service_host(child_names["service"], ns), port=resources.PG_PORT,
                          user=user, password=password)
        return await asyncio.wait_for(asyncio.to_thread(jobmain.database_bytes, target), timeout=15)
    except Exception:  # progress is best-effort; the Job's outcome is what counts
        return None


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def on_change(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await reconcile(body, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def on_timer(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await reconcile(body, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def on_delete(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    # Children carry ownerReferences, so the garbage collector removes them; the finalizer
    # exists so that cleanup which GC cannot do (none yet besides forgetting the lock) runs
    # before the object disappears. The source is never touched.
    _locks.pop(body["metadata"]["uid"], None)
    metrics.forget(body["metadata"]["uid"])
    logger.info("Migration deleted; owned children are garbage-collected")
