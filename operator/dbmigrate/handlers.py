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
from datetime import UTC, datetime
from typing import Any

import kopf

from . import actions, kube, metrics, planner, resources
from . import executeplan as xp
from .api import (
    APPROVE_ANNOTATION,
    GROUP,
    PLURAL,
    RETRY_ANNOTATION,
    VERSION,
    SpecError,
    parse_spec,
    with_operator_defaults,
)
from .config import Config

FINALIZER = f"{GROUP}/finalizer"
CONFIG = Config.from_env()

# kopf serialises change handlers per object, but timers run beside them: one lock per
# Migration keeps two reconciles of the same object from interleaving.
_locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
# The status this process last wrote, with the resourceVersion the write produced. A timer can
# fire with a body the watch has not refreshed yet; acting on that older status could repeat a
# step already taken (a switchover!). A body at least as new as our write wins, so changes made
# by others still count.
_written: dict[str, tuple[int, dict[str, Any]]] = {}
# Set by __main__: False when the operator watches a list of namespaces.
SCAN_CLUSTER = True


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.scanning.disabled = not SCAN_CLUSTER
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
        spec = with_operator_defaults(body.get("spec") or {}, CONFIG.default_test_ttl,
                                      CONFIG.default_retain_source_for)
        status = _freshest(uid, meta, dict(body.get("status") or {}))
        generation = int(meta.get("generation") or 0)
        child_names = resources.names(name)
        observation = target = execute = None
        ctx: actions.Context | None = None
        try:
            parsed = parse_spec(spec)
            ctx = actions.Context(ns, name, uid, parsed, status, generation, CONFIG, logger)
            observation = await kube.read_source(
                ns, parsed.source.stateful_set_name, parsed.source.service_name,
                parsed.source.credentials_secret_name)
            target = await kube.read_target(ns, child_names)
            target = dataclasses.replace(target, job=await kube.read_job(ns, child_names["copyjob"]))
            if parsed.test.smoke is not None and status.get("phase") == "Ready":
                target = dataclasses.replace(target, smoke_job=await kube.read_job(ns, child_names["smokejob"]))
            if status.get("phase") == "Copying" and target.job is not None and target.job.active:
                target = dataclasses.replace(target, bytes_copied=await actions.target_bytes(ctx))
            if parsed.mode == "execute":
                execute = dataclasses.replace(await actions.observe_execute(ctx), switchover_approved=(
                    (meta.get("annotations") or {}).get(APPROVE_ANNOTATION) == "true"))
        except SpecError:
            pass  # the planner reports it as a condition
        result = planner.plan(spec, status, generation, observation, datetime.now(UTC),
                              target=target, images=CONFIG.images, worker_images=CONFIG.worker_images,
                              name=name, namespace=ns, uid=uid, execute=execute,
                              peers=await kube.list_peers(ns), created=str(meta.get("creationTimestamp") or ""),
                              wal_free_min_bytes=CONFIG.wal_free_load_min_bytes,
                              retry_request=(meta.get("annotations") or {}).get(RETRY_ANNOTATION))
        status = await _write(ns, name, uid, status, result, logger)
        metrics.observe(uid, ns, name, str(spec.get("mode", "test")), status)
        if ctx is None or result.action is None:
            return
        ctx.status = status
        try:
            follow_up = await actions.perform(ctx, result.action, observation)
        except Exception as e:  # retried on the next reconcile; the status says what and why
            logger.warning("%s failed: %s", type(result.action).__name__, actions.safe_error(e))
            follow_up = planner.after_error(status, generation, datetime.now(UTC),
                                            _describe(result.action), actions.safe_error(e))
        if follow_up is not None:
            status = await _write(ns, name, uid, status, follow_up, logger)
            metrics.observe(uid, ns, name, str(spec.get("mode", "test")), status)


def _freshest(uid: str, meta: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    try:
        seen = int(meta.get("resourceVersion") or 0)
    except ValueError:
        return status
    mine = _written.get(uid)
    return dict(mine[1]) if mine is not None and mine[0] > seen else status


def _describe(action: object) -> str:
    # CamelCase action name -> words: "StartReplication" -> "start replication".
    name = type(action).__name__
    return "".join(" " + c.lower() if c.isupper() else c for c in name).strip()


async def _write(ns: str, name: str, uid: str, status: dict[str, Any], result: planner.Plan,
                 logger: kopf.Logger | logging.LoggerAdapter[Any]) -> dict[str, Any]:
    """Patch only what changed, post the plan's events; return the status as now stored."""
    changes = planner.status_changes(status, result.status)
    new = {k: v for k, v in {**status, **changes}.items() if v is not None}
    if changes:
        _written[uid] = (await kube.patch_status(ns, name, planner.merge_patch(status, changes)), new)
        logger.info("status: phase=%s %s", result.status.get("phase"), result.status.get("message", ""))
    for ev in result.events:
        await kube.post_event(ns, name, uid, ev.type, ev.reason, ev.message)
    return new


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def on_change(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await reconcile(body, logger)


@kopf.on.update(GROUP, VERSION, PLURAL, field=("metadata", "annotations", APPROVE_ANNOTATION))
@kopf.on.update(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RETRY_ANNOTATION))
async def on_annotation(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    # Approving a Manual switchover, or asking for a retry, should not wait for the timer.
    await reconcile(body, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.resync_seconds, initial_delay=CONFIG.resync_seconds)
async def on_timer(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await reconcile(body, logger)


# While the source refuses writes (strategy dump: fence, copy Job, restart, repoint; or an
# abort not yet unfenced) every step waits for the next reconcile: at the resync period they
# added up to 30 s of interruption for a 1 MB copy. Only such Migrations get this timer.
FENCED_POLL_SECONDS = 1.0


def _writes_stopped(status: kopf.Status, **_: Any) -> bool:
    return xp.writes_stopped(dict(status))


@kopf.timer(GROUP, VERSION, PLURAL, interval=FENCED_POLL_SECONDS, when=_writes_stopped)
async def on_fenced_timer(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await reconcile(body, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def on_delete(body: kopf.Body, logger: kopf.Logger, retry: int, **_: Any) -> None:
    # Children carry ownerReferences, so the garbage collector removes them; the finalizer
    # holds the object until what GC cannot do is done: an execute under way is finished (past
    # the point of no return) or its source left as it was (executeplan.before_delete).
    await _before_delete(body, logger, retry)
    _locks.pop(body["metadata"]["uid"], None)
    _written.pop(body["metadata"]["uid"], None)
    metrics.forget(body["metadata"]["uid"])
    logger.info("Migration deleted; owned children are garbage-collected")


# How long a deletion waits for the source to be reachable (retries of 10 s) before it lets the
# Migration go and says, in a Warning event, what is left on the source.
DELETE_RETRIES = 30


async def _before_delete(body: kopf.Body, logger: kopf.Logger, retry: int) -> None:
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    try:
        parsed = parse_spec(with_operator_defaults(body.get("spec") or {}, CONFIG.default_test_ttl,
                                                   CONFIG.default_retain_source_for))
    except SpecError:
        return  # never got anywhere
    if parsed.mode != "execute":
        return
    async with _locks[uid]:
        # What this operator last wrote may be newer than the body (a step finished meanwhile).
        status = _freshest(uid, meta, dict(body.get("status") or {}))
        selector = await kube.read_service_selector(ns, parsed.source.service_name)
        steps = xp.before_delete(status, uid, name, selector)
        if not steps:
            return
        ctx = actions.Context(ns, name, uid, parsed, status, int(meta.get("generation") or 0), CONFIG, logger,
                              deleting=True)
        try:
            for step in steps:
                logger.info("before deletion: %s", _describe(step))
                await actions.perform(ctx, step, None)
        except Exception as e:
            why = actions.safe_error(e)
            if retry < DELETE_RETRIES:
                raise kopf.TemporaryError(f"{_describe(step)} before deletion failed ({why}); retrying",
                                          delay=10) from e
            tag = xp.replication_tag(uid)
            msg = (f"deleted without {_describe(step)} ({why}): check the source for publications and "
                   f"replication slots named dbmigrate_{tag}_* and for default_transaction_read_only")
            logger.warning(msg)
            await kube.post_event(ns, name, uid, "Warning", "CleanupIncomplete", msg)
