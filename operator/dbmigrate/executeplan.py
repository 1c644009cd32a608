"""Pure decisions for mode=execute, after the target is provisioned and the check passed.

Steps, in order (strategy logical):
  1. Copying: a Job copies roles and every database's schema into the target (no data).
  2. Replicating: publications/slots on the source, subscriptions on the target; the initial
     copy fills the tables, then lag is reported until it is small.
  3. SwitchingOver: `status.switchover.startedAt` and the Service's previous selector are
     written BEFORE anything happens; the engine fences the source, waits until the target
     applied the fence LSN (within maxWriteDowntime, else unfence and fail), copies sequences,
     then the Service is repointed: the point of no return, recorded with the measured write
     interruption, and the Migration is locked.
  4. Completed: replication objects removed, the target's children no longer owned by the
     Migration (deleting it must not delete the new server), the source scaled to 0 and kept.
Strategy dump: fence, copy + verify in a Job, repoint, then step 4. A source of at least
``wal_free_min_bytes`` is loaded without WAL: the new server is restarted with
wal_level=minimal before the fence (writes still flow), and with logical again after the
copy, before the repoint (within the interruption; bounded by TARGET_RESTART_SECONDS).

Crash safety: a switchover found started but without a point of no return is resolved from
the Service itself: selecting the target means the repoint happened (roll forward); otherwise
the source is unfenced and replication resumes (roll back to step 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import conditions as cond
from . import resources
from .api import APPROVE_ANNOTATION, MigrationSpec, format_duration
from .observed import ExecuteObservation, JobObservation, ReplicationObservation, TargetObservation
from .planner import Event, Plan, _Builder, _progress

# Switch once the subscriptions are this close to the source (bytes of WAL not yet applied).
SWITCH_LAG_BYTES = 16 * 1024 * 1024
# Strategy dump: a restart of the new server while writes are stopped (wal_level back to
# logical) that takes longer than this unfences the source and fails the Migration.
TARGET_RESTART_SECONDS = 600.0
# Strategy dump, writes stopped: how long the copy Job's pod may wait for a node (capacity an
# autoscaler may add) before the source is unfenced and the execute fails.
COPY_START_SECONDS = 120.0
# Strategy dump: how long the fence may keep failing (retried every second) before the
# execute gives up and resets the source (a partial fence already refuses new writes).
FENCE_SECONDS = 60
NO_WORKER_IMAGE = "no worker image for the target version (DBMIGRATE_WORKER_IMAGES)"


@dataclass(frozen=True)
class ResetTestServer:
    """Mode went test -> execute: remove the test server; execute provisions its own."""


@dataclass(frozen=True)
class CreateSchemaJob:
    worker_image: str


@dataclass(frozen=True)
class StartReplication:
    tag: str


@dataclass(frozen=True)
class Switchover:
    tag: str
    max_write_downtime: float


@dataclass(frozen=True)
class RecoverSwitchover:
    """A switchover started before a crash and never reached the repoint: unfence."""

    tag: str


@dataclass(frozen=True)
class RestoreSource:
    """After an abort: leave the source as it was. Strategy logical: remove the replication
    objects (the engine already unfenced); dump: unfence. Repeated until it succeeds."""

    tag: str
    strategy: str


@dataclass(frozen=True)
class FenceSource:
    """Strategy dump: stop writes on the source before the copy."""


@dataclass(frozen=True)
class Repoint:
    """Strategy dump: the copy is verified; point the Service at the target."""


@dataclass(frozen=True)
class SetTargetWal:
    """Strategy dump: restart the new server with this wal_level (minimal: load without WAL;
    logical: its WAL back before it goes live)."""

    wal_level: str


@dataclass(frozen=True)
class Finalize:
    tag: str
    strategy: str


ExecuteAction = (ResetTestServer | CreateSchemaJob | StartReplication | Switchover | RecoverSwitchover
                 | RestoreSource | FenceSource | Repoint | SetTargetWal | Finalize)


def before_delete(status: dict[str, Any], uid: str, name: str, selector: dict[str, str] | None) -> list[object]:
    """What a deleted execute Migration must do before it goes (then its children are
    garbage-collected). Past the point of no return, including a repoint whose record was lost
    (``selector``, the source Service's, already selects the new server), only forward: finish
    (the new server, production now, must not be collected with the Migration). Before it, leave
    the source as it was: unfence it, drop the replication objects (a slot left behind holds the
    source's WAL until its disk is full)."""
    sw = status.get("switchover") or {}
    tag, strategy = replication_tag(uid), str(status.get("strategy") or "")
    if sw.get("completedAt") or (sw.get("abortedAt") and sw.get("sourceRestored")):
        return []
    if sw.get("pointOfNoReturnAt") or selector == _target_labels(name):
        return [Finalize(tag, strategy or "logical")]
    if strategy == "dump":
        return [RestoreSource(tag, "dump")] if sw.get("fencedAt") else []
    if strategy != "logical":
        return []
    steps: list[object] = []
    if sw.get("startedAt") and not sw.get("abortedAt"):
        steps.append(RecoverSwitchover(tag))  # a switchover cut short: the source may be fenced
    if sw or status.get("replication") is not None or status.get("phase") in ("Replicating", "SwitchingOver"):
        steps.append(RestoreSource(tag, "logical"))
    return steps


def replication_tag(uid: str) -> str:
    """Replication object names carry this, so two Migrations never share a slot."""
    return uid.replace("-", "")[:8]


def choose_strategy(spec: MigrationSpec, findings: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(strategy, problem): auto picks logical unless a finding blocks only the online move."""
    logical_blockers = [f for f in findings if f.get("severity") == "blocker" and f.get("appliesTo") == "logical"]
    if spec.execute.strategy == "dump":
        return "dump", None
    if spec.execute.strategy == "logical":
        if logical_blockers:
            return "logical", ("strategy logical is blocked by: " + "; ".join(
                f"{f.get('code')} on {f.get('object')}" for f in logical_blockers[:5])
                + ". Fix these or use strategy dump (downtime grows with data size).")
        return "logical", None
    return ("dump" if logical_blockers else "logical"), None


def _strategy_event(spec: MigrationSpec, strategy: str, status: dict[str, Any]) -> Event:
    if strategy == "logical":
        return Event("Normal", "StrategyLogical",
                     "strategy logical: online copy and replication; writes stop only for the final catch-up")
    why = "chosen by you" if spec.execute.strategy == "dump" else "the pre-flight check rules out logical"
    guess = (status.get("estimate") or {}).get("writeDowntimeSeconds")
    expected = f" (the test measured about {guess:.0f} s)" if isinstance(guess, int | float) else ""
    return Event("Warning", "StrategyDump",
                 f"strategy dump ({why}): writes stop for the whole copy, so the write interruption grows "
                 f"with the data size{expected}")


def needs_reset(status: dict[str, Any]) -> bool:
    return (status.get("target") or {}).get("provisionedFor") == "test"


def _target_labels(name: str) -> dict[str, str]:
    """What the source Service selects once repointed: the new server's pods."""
    return resources.labels(resources.Owner(name, "", ""), "target")


def wal_free_load(status: dict[str, Any], min_bytes: int | None) -> bool:
    """Strategy dump: load without WAL when the source is big enough that the WAL it saves
    (measured: 20-27 % of the copy time, config.py) outweighs a server restart
    within the write interruption. ``min_bytes`` None: never."""
    size = int((status.get("progress") or {}).get("bytesTotal") or 0)
    return min_bytes is not None and size >= min_bytes


def _settled(t: TargetObservation) -> bool:
    return t.rolled_out and t.ready_replicas >= 1


def plan_execute(b: _Builder, spec: MigrationSpec, t: TargetObservation, x: ExecuteObservation,
                 status: dict[str, Any], worker_image: str | None, uid: str,
                 wal_free_min_bytes: int | None = None) -> Plan:
    tag = replication_tag(uid)
    sw = dict(status.get("switchover") or {})
    target_labels = _target_labels(b.name)
    if status.get("strategy"):
        strategy = str(status["strategy"])
    else:
        strategy, problem = choose_strategy(spec, list(status.get("findings") or []))
        if problem:
            b.stalled("Checking", "StrategyBlocked", problem, "fix the source or change the strategy")
            return b.plan()
        b.status["strategy"] = strategy
        b.pending_events.append(_strategy_event(spec, strategy, status))
    # -- after the point of no return: only forward ---------------------------------------------
    if sw.get("pointOfNoReturnAt"):
        return _finalize(b, spec, x, sw, tag, strategy)
    if sw.get("abortedAt"):
        # Terminal (a new Migration retries): never fence or replicate again, only make sure
        # the source is left as it was.
        b.status["phase"], b.status["message"] = "Failed", status.get("message")
        if not sw.get("sourceRestored"):
            return b.plan(RestoreSource(tag, strategy))
        return b.plan()
    if strategy == "dump":
        if not sw.get("fencedAt"):
            if wal_free_load(status, wal_free_min_bytes) and t.wal_level != "minimal":
                b.progressing("Provisioning", "TargetWithoutWal",
                              "strategy dump: restarting the new server with wal_level=minimal, so that the "
                              "copy writes no WAL (it gets its WAL back before the Service moves)")
                return b.plan(SetTargetWal("minimal"))
            if not _settled(t):
                from .planner import target_not_ready

                return target_not_ready(b, t, f"the new server, restarting with wal_level={t.wal_level},",
                                        "TargetRestarting")
            if awaiting_approval(b, spec, x, "the target is ready"):
                return b.plan()
        return _dump(b, t, x, sw, worker_image, target_labels, tag)
    # -- logical ----------------------------------------------------------------------------------
    if sw.get("startedAt"):
        if x.service_selector == target_labels:
            # The repoint happened but was not recorded (crash): roll forward.
            b.status["switchover"] = {**sw, "pointOfNoReturnAt": sw["startedAt"]}
            b.status["locked"] = True
            b.progressing("SwitchingOver", "PointOfNoReturn", "the Service already points at the new server")
            return b.plan()
        b.status["switchover"] = None
        msg = ("a switchover was interrupted before the point of no return: unfencing the source and "
               "replicating again")
        b.progressing("Replicating", "SwitchoverRecovered", msg)
        return b.plan(RecoverSwitchover(tag), [Event("Warning", "SwitchoverRecovered", msg)])
    job = x.schema_job
    if job is None or not job.succeeded:
        return _job_phase(b, job, worker_image, "copying roles and schema into the target", CreateSchemaJob,
                          "SchemaCopy")
    rep = x.replication
    if rep is None or rep.subscribed < rep.databases or rep.databases == 0:
        b.progressing("Replicating", "StartingReplication", "starting logical replication into the target")
        return b.plan(StartReplication(tag))
    b.status["replication"] = {"lagBytes": rep.lag_bytes, "lagSeconds": round(rep.lag_seconds, 3),
                               "initialSyncDone": rep.initial_sync_done, "databases": rep.databases}
    if rep.initial_sync_done:
        # The data is in: what is left is the catch-up (shown as lag), not copying.
        b.status["progress"] = copied_all(status)
    else:
        b.status["progress"] = initial_copy_progress(status, rep)
    if not rep.initial_sync_done or rep.lag_bytes > SWITCH_LAG_BYTES:
        what = ("catching up" if rep.initial_sync_done else
                f"initial copy of the tables: {rep.tables_synced} of {rep.tables_total} done, "
                f"{b.status['progress']['display']}")
        b.progressing("Replicating", "Replicating",
                      f"replicating ({what}; lag {rep.lag_bytes} bytes, {rep.lag_seconds:.1f} s)")
        return b.plan()
    if awaiting_approval(b, spec, x, f"replication has caught up (lag {rep.lag_bytes} bytes)"):
        return b.plan()
    b.status["switchover"] = {"startedAt": cond.rfc3339(b.now), "previousSelector": dict(x.service_selector)}
    b.progressing("SwitchingOver", "SwitchingOver",
                  f"fencing writes on the source and switching over (at most "
                  f"{format_duration(spec.execute.max_write_downtime)} of write interruption)")
    return b.plan(Switchover(tag, spec.execute.max_write_downtime.total_seconds()))


def initial_copy_progress(status: dict[str, Any], rep: ReplicationObservation) -> dict[str, Any]:
    """The subscriptions' initial copy, against the source's size measured by the check. The
    target's databases are measured whole (indexes included, as the source's were), so the
    percentage stays below 100 until every table is synchronised, and never goes back."""
    total = int((status.get("progress") or {}).get("bytesTotal") or 0)
    before = int((status.get("progress") or {}).get("bytesCopied") or 0)
    copied = max(before, min(rep.bytes_copied, total * 99 // 100))
    return {**_progress(copied, total), "tablesCopied": rep.tables_synced, "tablesTotal": rep.tables_total}


def copied_all(status: dict[str, Any]) -> dict[str, Any]:
    """Progress at 100%: every byte the check measured on the source is on the target (and
    every table the initial copy counted, if it did)."""
    old = status.get("progress") or {}
    total, tables = int(old.get("bytesTotal") or 0), old.get("tablesTotal")
    return {**_progress(total, total), **({"tablesCopied": tables, "tablesTotal": tables} if tables else {})}


def awaiting_approval(b: _Builder, spec: MigrationSpec, x: ExecuteObservation, ready: str) -> bool:
    """spec.execute.switchover=Manual: hold before the write interruption until the user
    annotates the Migration. True while waiting (the status then says how to approve)."""
    if spec.execute.switchover != "Manual":
        return False
    if x.switchover_approved:
        b.set(cond.SWITCHOVER_APPROVED, "True", "Approved", f"annotation {APPROVE_ANNOTATION}=true is set")
        return False
    msg = (f"{ready}; waiting for approval to switch over (spec.execute.switchover=Manual): "
           f"kubectl annotate migration {b.name} {APPROVE_ANNOTATION}=true")
    old = cond.find(b.conds, cond.SWITCHOVER_APPROVED)
    if old is None or old["reason"] != "AwaitingApproval":
        b.pending_events.append(Event("Normal", "AwaitingApproval", msg))
    b.set(cond.SWITCHOVER_APPROVED, "False", "AwaitingApproval", msg)
    b.progressing(b.old.get("phase") or "Replicating", "AwaitingApproval", msg)
    return True


def _job_phase(b: _Builder, job: JobObservation | None, worker_image: str | None, what: str,
               create: type[CreateSchemaJob], reason: str) -> Plan:
    if job is None:
        if worker_image is None:
            b.stalled("Failed", "NoWorkerImage", NO_WORKER_IMAGE,
                      "fix the operator's configuration")
            return b.plan()
        b.progressing("Copying", f"Starting{reason}", what)
        return b.plan(create(worker_image))
    if job.failed:
        msg = f"{what} failed: {job.error or 'see the Job pod logs'}"
        from .retry import how
        b.stalled("Failed", f"{reason}Failed", msg,
                  f"the source is untouched; to retry, {how(b.name, resources.names(b.name)['schemajob'])}")
        return b.plan()
    from .planner import job_waiting, waiting_note

    stuck = job_waiting(b, job, f"the Job for {what}")
    if stuck is not None:
        return stuck
    b.progressing("Copying", reason, what + waiting_note(job))
    return b.plan()


def _dump(b: _Builder, t: TargetObservation, x: ExecuteObservation, sw: dict[str, Any],
          worker_image: str | None, target_labels: dict[str, str], tag: str) -> Plan:
    if not sw.get("fencedAt"):
        if worker_image is None:  # never stop writes for a copy that cannot run
            b.stalled("Failed", "NoWorkerImage", NO_WORKER_IMAGE,
                      "fix the operator's configuration; the source was not touched")
            return b.plan()
        b.status["switchover"] = {"fencedAt": cond.rfc3339(b.now), "previousSelector": dict(x.service_selector)}
        return _fence(b)
    if not sw.get("fenceConfirmedAt") and t.job is None:
        # fencedAt is written before the fence is made: a fence that failed (the source
        # unreachable for a moment) would otherwise let the copy run while writes go on, and
        # the writes after its snapshot would be lost at the repoint. (A copy Job that exists
        # was started by an operator before this record: it was fenced.)
        if (b.now - _parse(sw["fencedAt"])).total_seconds() > FENCE_SECONDS:
            return _give_writes_back(b, tag, "FenceFailed",
                                     f"the source could not be fenced within {FENCE_SECONDS} s",
                                     "check that the operator reaches the source (the events say why)")
        return _fence(b)
    if t.job is None or not t.job.succeeded:
        return _dump_copying(b, t, t.job, sw, worker_image, tag)
    b.status["progress"] = copied_all(b.old)
    if x.service_selector == target_labels:
        return _ponr(b, sw, b.now)
    if t.wal_level == "minimal":
        # Loaded without WAL: the production server needs it (replicas, backups) before it goes live.
        # The first attempt's time: a patch that failed and is repeated does not reset the bound.
        b.status["switchover"] = {**sw, "targetRestartedAt": sw.get("targetRestartedAt") or cond.rfc3339(b.now)}
        b.progressing("SwitchingOver", "RestartingTarget",
                      "the copy is verified: restarting the new server with wal_level=logical before the "
                      "Service moves")
        return b.plan(SetTargetWal("logical"))
    if not _settled(t):
        return _dump_restarting(b, t, sw, tag)
    b.progressing("SwitchingOver", "Repointing", "the copy is verified: pointing the Service at the new server")
    return b.plan(Repoint())


def _fence(b: _Builder) -> Plan:
    """Stop writes on the source (again, while the fence is not confirmed)."""
    b.progressing("SwitchingOver", "Fencing", "strategy dump: stopping writes on the source for the copy")
    return b.plan(FenceSource())


def _give_writes_back(b: _Builder, tag: str, reason: str, why: str, hint: str) -> Plan:
    """Strategy dump, writes stopped, and the move cannot go on: unfence the source (retried
    until done, RestoreSource) and fail; a new Migration retries."""
    msg = f"{why}; unfencing the source"
    b.status["switchover"] = {"abortedAt": cond.rfc3339(b.now), "sourceRestored": False}
    b.stalled("Failed", reason, msg, f"{hint}; the source serves writes again; create a new Migration")
    return b.plan(RestoreSource(tag, "dump"), [Event("Warning", reason, msg)])


def _dump_copying(b: _Builder, t: TargetObservation, job: JobObservation | None, sw: dict[str, Any],
                  worker_image: str | None, tag: str) -> Plan:
    """Fenced, the copy Job to start or running: its progress, or writes given back when it
    failed or cannot start."""
    from .planner import CreateCopyJob, copy_progress, waiting_note

    if job is not None and job.failed:
        r = job.result or {}
        return _give_writes_back(b, tag, "CopyFailed", f"the copy failed ({r.get('diff') or job.error})",
                                 "see the copy Job's pod")
    if job is None:
        if worker_image is None:  # the operator's configuration changed under the fence
            return _give_writes_back(b, tag, "NoWorkerImage", NO_WORKER_IMAGE, "fix the operator's configuration")
        b.progressing("Copying", "Copying", "strategy dump: copying while writes are stopped")
        return b.plan(CreateCopyJob(worker_image))
    why = job.pod_problem
    if why is not None and (why.needs_person or (b.now - _parse(sw["fencedAt"])).total_seconds()
                            > COPY_START_SECONDS):
        return _give_writes_back(b, tag, "CopyCannotStart", f"the copy Job cannot start ({why.message})",
                                 why.hint or "free capacity for it")
    b.status["progress"] = copy_progress(b.old, t)
    b.progressing("Copying", "Copying", f"strategy dump: copying while writes are stopped "
                  f"({b.status['progress']['display']}){waiting_note(job)}")
    return b.plan()


def _dump_restarting(b: _Builder, t: TargetObservation, sw: dict[str, Any], tag: str) -> Plan:
    """Fenced, copied, the new server restarting with its WAL: never repoint onto a server
    that is not up on its current command line; give writes back as soon as it is known not
    to come back (it crash-loops, an input is missing) or after TARGET_RESTART_SECONDS (a pull
    failure of the image it just ran may pass)."""
    since = sw.get("targetRestartedAt")
    p = t.pod_problem
    if p is not None and p.needs_person and not p.image_pull:
        return _give_writes_back(b, tag, "TargetRestartFailed", "the new server cannot start after its restart "
                                 f"with wal_level=logical ({p.message})", "see the new server's pod")
    if since and (b.now - _parse(since)).total_seconds() > TARGET_RESTART_SECONDS:
        return _give_writes_back(b, tag, "TargetRestartFailed", "the new server did not come back within "
                                 f"{TARGET_RESTART_SECONDS:.0f} s of its restart with wal_level=logical",
                                 "see the new server's pod")
    b.progressing("SwitchingOver", "RestartingTarget", "waiting for the new server to restart with its WAL"
                  + (f": {p.message}" if p else ""))
    return b.plan()


def _ponr(b: _Builder, sw: dict[str, Any], now: datetime) -> Plan:
    start = sw.get("fencedAt") or sw.get("startedAt")
    down = (now - _parse(start)).total_seconds() if start else None
    b.status["switchover"] = {**sw, "pointOfNoReturnAt": cond.rfc3339(now),
                              **({"writeDowntimeSeconds": round(down, 3)} if down is not None else {})}
    b.status["locked"] = True
    b.progressing("SwitchingOver", "PointOfNoReturn", "writes moved to the new server")
    return b.plan(extra=[Event("Normal", "PointOfNoReturn", "writes moved to the new server")])


def _finalize(b: _Builder, spec: MigrationSpec, x: ExecuteObservation, sw: dict[str, Any], tag: str,
              strategy: str) -> Plan:
    b.status["locked"] = True
    if sw.get("completedAt"):
        msg = (f"completed: applications reach PostgreSQL {spec.target.version} through Service "
               f"{spec.source.service_name}; the old server is stopped and kept until {sw.get('retainSourceUntil')}")
        b.set(cond.READY, "True", "Completed", msg)
        b.set(cond.RECONCILING, "False", "Completed", msg)
        b.conds = cond.remove_condition(b.conds, cond.STALLED)
        b.status["phase"] = "Completed"
        b.status["message"] = msg
        return b.plan()
    b.progressing("SwitchingOver", "Finalizing",
                  "cleaning up replication, keeping the new server, stopping the old one")
    return b.plan(Finalize(tag, strategy))


def _parse(text: str) -> datetime:
    from .planner import _parse_time

    return _parse_time(text)


def writes_stopped(status: dict[str, Any]) -> bool:
    """The source refuses writes because of this Migration and a step is still to come:
    fenced for a dump copy and not yet repointed, or a dump aborted and not yet unfenced. (A
    logical switchover fences, catches up and repoints, or unfences, inside one step.)"""
    sw = status.get("switchover") or {}
    return bool((sw.get("fencedAt") and not sw.get("pointOfNoReturnAt"))
                or (status.get("strategy") == "dump" and sw.get("abortedAt") and not sw.get("sourceRestored")))


def after_fence(status: dict[str, Any], generation: int, now: datetime) -> Plan:
    """Strategy dump: the source refuses writes and its client sessions were ended: the copy
    may start."""
    b = _Builder(status, generation, now)
    b.status["switchover"] = {**(status.get("switchover") or {}), "fenceConfirmedAt": cond.rfc3339(now)}
    b.progressing("SwitchingOver", "Fenced", "strategy dump: the source refuses writes; starting the copy")
    return b.plan()


def after_repoint(status: dict[str, Any], generation: int, now: datetime) -> Plan:
    """Strategy dump: the Service points at the new server: the point of no return, recorded at
    once (the write interruption runs from the fence to now)."""
    return _ponr(_Builder(status, generation, now), dict(status.get("switchover") or {}), now)


def repointed(status: dict[str, Any], name: str, x: ExecuteObservation | None) -> bool:
    """A switchover or fence is recorded and the source Service already selects the new server:
    the repoint happened (its record may have been lost in a crash). Only forward from here:
    the source checks, which expect the Service on the old server, no longer apply."""
    sw = status.get("switchover") or {}
    started = (sw.get("startedAt") or sw.get("fencedAt")) and not sw.get("abortedAt")
    return bool(started) and x is not None and x.service_selector == _target_labels(name)


def after_switchover(status: dict[str, Any], generation: int, now: datetime, seconds: float) -> Plan:
    """The Service points at the new server: record the point of no return and lock."""
    b = _Builder(status, generation, now)
    sw = dict(status.get("switchover") or {})
    b.status["switchover"] = {**sw, "pointOfNoReturnAt": cond.rfc3339(now), "writeDowntimeSeconds": round(seconds, 3)}
    b.status["locked"] = True
    if status.get("replication"):
        # The switchover waited until the new server had applied everything the fenced source
        # committed: the last lag the panel saw (sampled before the fence) is no longer true.
        b.status["replication"] = {**status["replication"], "lagBytes": 0, "lagSeconds": 0}
    msg = f"writes moved to the new server after {seconds:.2f} s of write interruption; the Migration is locked"
    b.progressing("SwitchingOver", "PointOfNoReturn", msg)
    return b.plan(extra=[Event("Normal", "PointOfNoReturn", msg)])


def after_abort(status: dict[str, Any], generation: int, now: datetime, reason: str,
                cleaned: bool = True) -> Plan:
    """The target did not catch up in time: the source was unfenced and serves writes as before.
    Terminal; if removing the replication objects failed, it is retried (RestoreSource)."""
    b = _Builder(status, generation, now)
    b.status["switchover"] = {"abortedAt": cond.rfc3339(now), "sourceRestored": cleaned}
    left = "replication objects were removed" if cleaned else "removing the replication objects"
    msg = (f"switchover aborted before the point of no return ({reason}); the source was unfenced and "
           f"serves writes as before, {left}")
    b.stalled("Failed", "SwitchoverAborted", msg,
              "raise spec.execute.maxWriteDowntime or reduce write load, then create a new Migration")
    return b.plan(extra=[Event("Warning", "SwitchoverAborted", msg)])


def after_finalize(status: dict[str, Any], generation: int, now: datetime, spec: MigrationSpec) -> Plan:
    b = _Builder(status, generation, now)
    sw = dict(status.get("switchover") or {})
    until = now + spec.execute.retain_source_for
    b.status["switchover"] = {**sw, "completedAt": cond.rfc3339(now), "retainSourceUntil": cond.rfc3339(until)}
    b.status["progress"] = copied_all(status)
    b.status["locked"] = True
    msg = (f"completed: applications reach PostgreSQL {spec.target.version} through Service "
           f"{spec.source.service_name}; the old server is stopped and kept until {cond.rfc3339(until)}")
    b.set(cond.READY, "True", "Completed", msg)
    b.set(cond.RECONCILING, "False", "Completed", msg)
    b.conds = cond.remove_condition(b.conds, cond.STALLED)
    b.status["phase"] = "Completed"
    b.status["message"] = msg
    return b.plan(extra=[Event("Normal", "Completed", msg)])


def after_restore(status: dict[str, Any], generation: int, now: datetime) -> Plan:
    """RestoreSource succeeded: nothing of the Migration is left on the source."""
    b = _Builder(status, generation, now)
    b.status["switchover"] = {**(status.get("switchover") or {}), "sourceRestored": True}
    b.status["phase"], b.status["message"] = "Failed", status.get("message")
    return b.plan(extra=[Event("Normal", "SourceRestored",
                               "the source is as before the Migration: unfenced, no replication objects")])
