"""Executors: perform what the planner decided (Kubernetes calls via kube.py, database work
via the engine, in worker threads). Each action is safe to repeat. An action that produces a
result returns the follow-up status as a Plan from a pure function of the planner.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import executeplan as xp
from . import kube, planner, resources, retry
from .api import MigrationSpec
from .config import Config
from .engines.base import Finding
from .observed import ExecuteObservation, ReplicationObservation, SourceObservation
from .redact import redact

Logger = logging.Logger | logging.LoggerAdapter[Any]
TARGET_CHILDREN = (("Job", "smokejob"), ("Job", "copyjob"), ("Job", "schemajob"), ("StatefulSet", "statefulset"),
                   ("Service", "service"), ("Service", "headless"), ("NetworkPolicy", "networkpolicy"),
                   ("Secret", "secret"), ("Service", "source"))


@dataclass
class Context:
    ns: str
    name: str
    uid: str
    spec: MigrationSpec
    status: dict[str, Any]
    generation: int
    config: Config
    logger: Logger
    # The Migration is being deleted: the garbage collector may be removing its children
    # already (a foreground deletion), so connections() copes without them.
    deleting: bool = False

    @property
    def children(self) -> dict[str, str]:
        return resources.names(self.name)

    @property
    def owner(self) -> resources.Owner:
        return resources.Owner(name=self.name, namespace=self.ns, uid=self.uid)


def safe_error(e: BaseException, *secret_values: str) -> str:
    """The error's first line, fit for status, events and logs (redact.py)."""
    text = redact(str(e).strip(), *secret_values)
    return text.splitlines()[0] if text else type(e).__name__


async def connections(ctx: Context) -> tuple[Any, Any, tuple[str, str]]:
    """(source, target, passwords) ConnInfos through the Services' DNS names (in execute mode the
    source through the Migration's own Service for it: see resources.source_service)."""
    from .engines.postgres.conninfo import ConnInfo

    s = ctx.spec.source
    su, sp = await kube.read_credentials(ctx.ns, s.credentials_secret_name, s.username_key, s.password_key)
    host = resources.source_host(ctx.owner, ctx.spec)
    if ctx.deleting and not await kube.read_service_selector(ctx.ns, ctx.children["source"]):
        # Our own Service to the old server was collected. Before the repoint the user's
        # Service still selects the old server; after it, finalize's cleanup is best-effort.
        host = resources.service_host(s.service_name, ctx.ns)
    source = ConnInfo(host=host, port=s.port, user=su, password=sp)
    login = (await kube.read_credentials_if_any(ctx.ns, ctx.children["secret"]) if ctx.deleting else
             await kube.read_credentials(ctx.ns, ctx.children["secret"], "username", "password"))
    if login is None:  # collected: nothing to clean on the new server, which goes too
        return source, None, (sp, "")
    target = ConnInfo(host=resources.service_host(ctx.children["service"], ctx.ns), port=resources.PG_PORT,
                      user=login[0], password=login[1])
    return source, target, (sp, login[1])


async def perform(ctx: Context, action: object, obs: SourceObservation | None) -> planner.Plan | None:
    """Run one action; return a follow-up plan when the action produced a result to record."""
    if isinstance(action, planner.EnsureTarget) and obs is not None:
        await ensure_target(ctx, obs, action.image)
    elif isinstance(action, planner.CreateCopyJob):
        await _create(ctx, resources.copy_job(ctx.owner, ctx.spec, action.worker_image,
                                              jobs=ctx.config.copy_parallelism,
                                              job_resources=ctx.config.copy_resources))
    elif isinstance(action, planner.CreateSmokeJob):
        image = ctx.spec.target.image or ctx.config.images.get(ctx.spec.target.version, "")
        await _create(ctx, resources.smoke_job(ctx.owner, ctx.spec, image, ctx.config.copy_resources))
    elif isinstance(action, xp.CreateSchemaJob):
        await _create(ctx, resources.copy_job(ctx.owner, ctx.spec, action.worker_image, command="schema",
                                              name_key="schemajob", jobs=ctx.config.copy_parallelism,
                                              job_resources=ctx.config.copy_resources))
    elif isinstance(action, retry.DeleteFailedJob):
        return await _delete_for_retry(ctx, action.name)
    elif isinstance(action, planner.ExpireTarget | xp.ResetTestServer):
        await delete_target(ctx)
    elif isinstance(action, planner.RunPreflight):
        findings, error, size = await run_preflight(ctx)
        return planner.after_preflight(ctx.status, ctx.generation, datetime.now(UTC), findings, error, size)
    elif isinstance(action, xp.StartReplication | xp.RecoverSwitchover | xp.FenceSource):
        await _engine(ctx, action)
        if isinstance(action, xp.FenceSource):
            return xp.after_fence(ctx.status, ctx.generation, datetime.now(UTC))
    elif isinstance(action, xp.Switchover):
        return await switchover(ctx, action)
    elif isinstance(action, xp.Repoint):
        await release_for_repoint(ctx)
        await kube.repoint_service(ctx.ns, ctx.spec.source.service_name, _target_labels(ctx))
        return xp.after_repoint(ctx.status, ctx.generation, datetime.now(UTC))
    elif isinstance(action, xp.SetTargetWal):
        await kube.patch_statefulset(ctx.ns, ctx.children["statefulset"],
                                     resources.server_args_patch(action.wal_level))
        ctx.logger.info("new server restarting with wal_level=%s", action.wal_level)
    elif isinstance(action, xp.Finalize):
        return await finalize(ctx, action)
    elif isinstance(action, xp.RestoreSource):
        await restore_source(ctx, action)
        return xp.after_restore(ctx.status, ctx.generation, datetime.now(UTC))
    return None


async def _create(ctx: Context, obj: dict[str, Any]) -> None:
    if await kube.ensure(obj):
        ctx.logger.info("created %s %s", obj["kind"], obj["metadata"]["name"])


def _target_labels(ctx: Context) -> dict[str, str]:
    return resources.labels(ctx.owner, "target")


async def target_login(ctx: Context) -> tuple[str, str]:
    """The new server's administrator login. A test server gets its own (published in status,
    handed to testers). An execute target becomes the customer's server behind the same Service,
    so it takes the source's login: applications keep their credentials. (Other roles keep
    theirs through the copy of roles, password hashes included.)"""
    if ctx.spec.mode == "execute":
        s = ctx.spec.source
        return await kube.read_credentials(ctx.ns, s.credentials_secret_name, s.username_key, s.password_key)
    return "postgres", secrets.token_urlsafe(24)


async def ensure_target(ctx: Context, obs: SourceObservation, image: str) -> None:
    sts = obs.statefulset
    source_container = planner.pick_container(ctx.spec, sts.containers) if sts else None
    # Used only if the Secret does not exist yet: ensure() never overwrites.
    username, password = await target_login(ctx)
    objects = resources.target_objects(
        ctx.owner, ctx.spec, image,
        source_size=sts.volume_size if sts else None,
        source_storage_class=sts.storage_class_name if sts else None,
        operator_namespace=ctx.config.operator_namespace,
        username=username, password=password,
        source_resources=source_container.resources if source_container else None)
    if ctx.spec.mode == "execute" and sts is not None and obs.service is not None:
        port = ctx.spec.source.port
        objects.insert(1, resources.source_service(ctx.owner, sts.selector, port,
                                                   obs.service.target_ports.get(port, port)))
    for obj in objects:
        await _create(ctx, obj)


async def delete_target(ctx: Context, wait: float = 60) -> None:
    """Delete every child the Migration controls, then wait until they are gone."""
    for kind, key in TARGET_CHILDREN:
        if await kube.delete_owned(ctx.ns, kind, ctx.children[key], ctx.uid):
            ctx.logger.info("deleted %s %s", kind, ctx.children[key])
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        t = await kube.read_target(ctx.ns, ctx.children)
        jobs = [await kube.read_job(ctx.ns, ctx.children[k]) for k in ("copyjob", "schemajob", "smokejob")]
        if not t.present and not any(jobs):
            return
        await asyncio.sleep(1)


async def run_preflight(ctx: Context) -> tuple[list[Finding] | None, str | None, int | None]:
    """The engine's check against source and target; (None, safe message, None) on failure."""
    from .engines.postgres import checks, jobmain

    try:
        source, target, pws = await connections(ctx)
    except Exception as e:  # missing Secret/key: say which kind of error, never a value
        return None, f"cannot read credentials ({type(e).__name__})", None

    def run() -> tuple[list[Finding], int]:
        return checks.check(source, checks.TargetInfo.from_server(target)), jobmain.database_bytes(source)

    try:
        findings, size = await asyncio.wait_for(asyncio.to_thread(run), timeout=ctx.config.preflight_timeout)
        return findings, None, size
    except Exception as e:  # unreachable server, auth failure, timeout: retried next reconcile
        return None, safe_error(e, *pws), None


async def _delete_for_retry(ctx: Context, job: str) -> planner.Plan | None:
    """status.retry already says the Job was deleted (written first, so a value is acted on
    once): correct it when that did not happen."""
    try:
        if await kube.delete_owned(ctx.ns, "Job", job, ctx.uid):
            ctx.logger.info("deleted failed Job %s: a retry was asked for", job)
            return None
        why = "it is gone already, or not this Migration's"
    except Exception as e:  # the apiserver refused or was unreachable: the next value tries again
        why = safe_error(e)
    return retry.not_done(ctx.status, job, why)


async def target_bytes(ctx: Context) -> int | None:
    """How much the target holds now: the copy's progress (None when it cannot be read)."""
    from .engines.postgres import jobmain

    try:
        _, target, _ = await connections(ctx)
        return await asyncio.wait_for(asyncio.to_thread(jobmain.database_bytes, target), timeout=15)
    except Exception:  # progress is best-effort; the Job's outcome is what counts
        return None


async def observe_execute(ctx: Context) -> ExecuteObservation:
    from .engines.postgres import online

    rep = None
    if ctx.status.get("phase") == "Replicating":
        try:
            source, target, _ = await connections(ctx)
            tag = xp.replication_tag(ctx.uid)
            st = await asyncio.wait_for(asyncio.to_thread(online.measure, source, target, tag), timeout=60)
            rep = ReplicationObservation(st.databases, st.subscribed, st.initial_sync_done, st.lag_bytes,
                                         st.lag_seconds, st.tables_synced, st.tables_total, st.bytes_copied)
        except Exception as e:  # unreachable for a moment: measure again next time
            ctx.logger.warning("cannot measure replication: %s", safe_error(e))
    return ExecuteObservation(
        schema_job=await kube.read_job(ctx.ns, ctx.children["schemajob"]),
        service_selector=await kube.read_service_selector(ctx.ns, ctx.spec.source.service_name),
        replication=rep,
    )


async def _engine(ctx: Context, action: object) -> None:
    from .engines.postgres import online

    source, target, _ = await connections(ctx)
    if isinstance(action, xp.StartReplication):
        n = await asyncio.to_thread(online.start, source, target, action.tag)
        ctx.logger.info("replication started for %d database(s)", n)
    elif isinstance(action, xp.RecoverSwitchover):
        await adopt_target(ctx)
        await asyncio.to_thread(online.unfence, source)
        ctx.logger.info("source unfenced after an interrupted switchover")
    elif isinstance(action, xp.FenceSource):
        await asyncio.to_thread(online.fence, source)
        ctx.logger.info("source fenced (strategy dump)")


async def switchover(ctx: Context, action: xp.Switchover) -> planner.Plan:
    from .engines.postgres import logical, online

    source, target, pws = await connections(ctx)
    labels = _target_labels(ctx)

    def repoint() -> None:
        kube.repoint_service_sync(ctx.ns, ctx.spec.source.service_name, labels)

    # Before the writes stop, not after the repoint. An abort gives it back to the Migration.
    await release_for_repoint(ctx)
    try:
        seconds = await asyncio.to_thread(online.switchover, source, target, action.tag, repoint,
                                          action.max_write_downtime)
    except logical.SwitchoverAborted as e:
        msg = safe_error(e, *pws)
        cleaned = True
        try:
            await adopt_target(ctx)
            await asyncio.to_thread(online.cleanup, source, target, action.tag)
        except Exception as ce:  # retried by RestoreSource; the source is unfenced either way
            ctx.logger.warning("cleanup after the aborted switchover failed: %s", safe_error(ce, *pws))
            cleaned = False
        return xp.after_abort(ctx.status, ctx.generation, datetime.now(UTC), msg, cleaned)
    return xp.after_switchover(ctx.status, ctx.generation, datetime.now(UTC), seconds)


async def restore_source(ctx: Context, action: xp.RestoreSource) -> None:
    from .engines.postgres import online

    await adopt_target(ctx)
    if action.strategy == "dump":
        # A copy Job still active (its pod could not start) would start copying later, when its
        # image appears, from a source that serves writes again, for a Migration that failed.
        # A finished one stays: its pod says why the copy failed.
        job = await kube.read_job(ctx.ns, ctx.children["copyjob"])
        if job is not None and job.active and await kube.delete_owned(ctx.ns, "Job", ctx.children["copyjob"],
                                                                        ctx.uid):
            ctx.logger.info("copy Job %s stopped", ctx.children["copyjob"])
    source, target, _ = await connections(ctx)
    if action.strategy == "logical":
        await asyncio.to_thread(online.cleanup, source, target, action.tag)
    else:
        await asyncio.to_thread(online.unfence, source)
    ctx.logger.info("source restored after the aborted execute (strategy %s)", action.strategy)


# The new server: the Migration's until the repoint, then production, outliving the Migration.
NEW_SERVER = (("StatefulSet", "statefulset"), ("Service", "service"), ("Service", "headless"),
              ("NetworkPolicy", "networkpolicy"), ("Secret", "secret"))


async def release_target(ctx: Context) -> None:
    for kind, key in NEW_SERVER:
        if await kube.release_owned(ctx.ns, kind, ctx.children[key], ctx.uid):
            ctx.logger.info("%s %s now outlives the Migration", kind, ctx.children[key])


async def release_for_repoint(ctx: Context) -> None:
    """From the repoint on, the new server is production: deleting the Migration (a
    foreground deletion collects children at once, while the finalizer runs) must not take it
    along. So it is released before; and never repointed onto if the garbage collector got to
    it first."""
    await release_target(ctx)
    if await kube.being_deleted(ctx.ns, "StatefulSet", ctx.children["statefulset"]):
        raise RuntimeError(f"the new server's StatefulSet {ctx.children['statefulset']} is being deleted")


async def adopt_target(ctx: Context) -> None:
    """The switchover did not reach the repoint: the new server is the Migration's again."""
    for kind, key in NEW_SERVER:
        if await kube.adopt_owned(ctx.ns, kind, ctx.children[key], resources.owner_reference(ctx.owner)):
            ctx.logger.info("%s %s belongs to the Migration again", kind, ctx.children[key])


async def finalize(ctx: Context, action: xp.Finalize) -> planner.Plan:
    from .engines.postgres import online

    if action.strategy == "logical":
        try:
            source, target, _ = await connections(ctx)
            await asyncio.to_thread(online.cleanup, source, target, action.tag)
        except Exception as e:  # already cleaned by the switchover, or the source is gone
            ctx.logger.info("replication cleanup: %s", safe_error(e))
    await release_target(ctx)  # done by the switchover; again for a repoint made before this version
    await kube.scale_statefulset(ctx.ns, ctx.spec.source.stateful_set_name, 0)
    ctx.logger.info("source StatefulSet %s scaled to 0 (kept with its volume)", ctx.spec.source.stateful_set_name)
    # Stopped, the old server is reached by nothing: the Migration's own Service to it goes.
    if await kube.delete_owned(ctx.ns, "Service", ctx.children["source"], ctx.uid):
        ctx.logger.info("Service %s (the operator's way to the old server) deleted", ctx.children["source"])
    return xp.after_finalize(ctx.status, ctx.generation, datetime.now(UTC), ctx.spec)
