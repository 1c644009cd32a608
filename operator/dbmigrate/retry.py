"""Pure: a retry request (annotation dbmigrate.dev/retry) -> the failed Job to start again.

A failed copy, schema copy or smoke test stalls its Migration until someone deletes the failed
Job: the next reconcile creates it again. A customer panel or a GitOps pipeline may edit a
Migration but not its Jobs, so each new value of the annotation asks for that once. The value
acted on is kept in status.retry, so a value is acted on once, whatever the number of
reconciles that see it, and the same manifest re-applied asks nothing.

Only steps that are safe to run again are retried: the test copy (a half-restored database
is dropped and redone), the smoke test, the execute's schema copy (before any fence). The
execute copy of strategy dump is not: its failure gave the writes back and ended that
execute (a new Migration retries).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import conditions as cond
from . import resources
from .api import RETRY_ANNOTATION
from .observed import ExecuteObservation, JobObservation, PeerMigration, TargetObservation
from .planner import Event, Plan, active_peers

# status.retry.request keeps at most this much of the value (an annotation may hold 256 kB).
SHOWN = 63


@dataclass(frozen=True)
class DeleteFailedJob:
    """Delete the failed Job (only if this Migration controls it); the next reconcile creates
    it again, as it does for a Job deleted by hand."""

    name: str


def how(name: str, job: str) -> str:
    """The two ways to start a failed Job's step again, for a Migration's hint."""
    return (f"set annotation {RETRY_ANNOTATION} to a new value "
            f"(kubectl annotate migration {name} {RETRY_ANNOTATION}=<new value> --overwrite) "
            f"or delete Job {job}")


def failed_job(name: str, mode: str, target: TargetObservation | None, execute: ExecuteObservation | None,
               conditions: list[cond.Condition] | None = None) -> tuple[str, str] | None:
    """(Job name, what it does) of the failed step a retry starts again; None if none failed.

    With `conditions` (the plan's), only a Job whose failure is what the Migration reports: a
    Migration stalled for another reason (its source gone, say) would not create it again."""
    n = resources.names(name)
    t = target or TargetObservation()
    # (Job, its name, what it does, the condition and reason its failure shows as)
    candidates: list[tuple[JobObservation | None, str, str, str, tuple[str, ...]]] = []
    if mode == "test":
        # Test mode only for the smoke test: an execute never runs one (its target is a new server).
        candidates += [(t.smoke_job, n["smokejob"], "your smoke test", cond.SMOKE_TEST, ("SmokeTestFailed",)),
                       (t.job, n["copyjob"], "the copy", cond.READY, ("CopyFailed", "VerificationFailed"))]
    elif execute is not None:
        candidates.append((execute.schema_job, n["schemajob"], "the copy of roles and schema", cond.READY,
                           ("SchemaCopyFailed",)))
    for job, job_name, what, ctype, reasons in candidates:
        if job is None or not job.failed:
            continue
        shown = cond.find(conditions, ctype) if conditions is not None else None
        if conditions is None or (shown is not None and shown.get("reason") in reasons):
            return job_name, what
    return None


def pending(request: str | None, status: dict[str, Any]) -> str | None:
    """The annotation's value when it is not the last one acted on."""
    if not request:
        return None
    done = (status.get("retry") or {}).get("request")
    return None if request[:SHOWN] == done else request


def _rival(name: str, source: str, peers: list[PeerMigration]) -> PeerMigration | None:
    """Another unfinished Migration of the same source: a retry would put this one back in
    its way (the earlier one goes first), holding up, say, an execute that stopped writes."""
    return next(iter(active_peers(name, source, peers)), None)


def apply(result: Plan, request: str | None, status: dict[str, Any], name: str, mode: str,
          target: TargetObservation | None, execute: ExecuteObservation | None, now: datetime,
          source: str = "", peers: list[PeerMigration] | None = None) -> Plan:
    """The plan, plus what a new request does. Every new value is answered at once, in
    status.retry and an Event: a retry, or why there is nothing to retry now."""
    value = pending(request, status)
    if value is None:
        return result
    asked = f"{RETRY_ANNOTATION}={value[:SHOWN]!r}"
    record = {"request": value[:SHOWN], "at": cond.rfc3339(now)}
    failed = None if result.action is not None else failed_job(name, mode, target, execute,
                                                               result.status.get("conditions"))
    rival = _rival(name, source, peers or []) if failed is not None else None
    if failed is None or rival is not None:
        if rival is not None:
            why = (f"Migration {rival.name!r} (phase {rival.phase}) is working on StatefulSet {source!r}; "
                   f"delete it first, or create a new Migration")
        else:
            now_msg = result.status.get("message") or status.get("message") or ""
            why = "no failed step to start again now" + (
                f" (phase {result.status.get('phase')}: {now_msg})" if now_msg else "")
        result.status["retry"] = {**record, "result": "nothing to retry"}
        result.events.append(Event("Normal", "NothingToRetry", f"{asked}: nothing to retry, {why}"))
        return result
    job, what = failed
    msg = f"{asked}: starting {what} again (deleting the failed Job {job})"
    result.status["retry"] = {**record, "result": f"deleted Job {job}"}
    result.events.append(Event("Normal", "Retrying", msg))
    result.action = DeleteFailedJob(job)
    return result


def not_done(status: dict[str, Any], job: str, why: str) -> Plan:
    """The Job of a retry could not be deleted: say so where the retry was recorded, so that
    the value is not taken for done (a new value tries again)."""
    record = dict(status.get("retry") or {})
    msg = f"Job {job} was not deleted ({why}); set {RETRY_ANNOTATION} to a new value to try again"
    return Plan(status={"retry": {**record, "result": msg}}, events=[Event("Warning", "RetryFailed", msg)])
