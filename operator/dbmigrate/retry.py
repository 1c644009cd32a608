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
from .observed import ExecuteObservation, JobObservation, TargetObservation
from .planner import Event, Plan

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


def failed_job(name: str, mode: str, target: TargetObservation | None,
               execute: ExecuteObservation | None) -> tuple[str, str] | None:
    """(Job name, what it does) of the failed step a retry starts again; None if none failed."""
    n = resources.names(name)
    t = target or TargetObservation()
    # Test mode only for the smoke test: an execute never runs one (its target is a new server).
    candidates: list[tuple[JobObservation | None, str, str]] = []
    if mode == "test":
        candidates += [(t.smoke_job, n["smokejob"], "your smoke test"), (t.job, n["copyjob"], "the copy")]
    elif execute is not None:
        candidates.append((execute.schema_job, n["schemajob"], "the copy of roles and schema"))
    return next(((job_name, what) for job, job_name, what in candidates if job is not None and job.failed), None)


def pending(request: str | None, status: dict[str, Any]) -> str | None:
    """The annotation's value when it is one not acted on yet."""
    if not request:
        return None
    done = (status.get("retry") or {}).get("request")
    return None if request[:SHOWN] == done else request


def apply(result: Plan, request: str | None, status: dict[str, Any], name: str, mode: str,
          target: TargetObservation | None, execute: ExecuteObservation | None, now: datetime) -> Plan:
    """The plan, plus the retry a new request asks for. A reconcile that already has work to do
    leaves the request for a later one (nothing is lost: it stays new until acted on)."""
    value = pending(request, status)
    if value is None or result.action is not None:
        return result
    asked = f"{RETRY_ANNOTATION}={value[:SHOWN]!r}"
    failed = failed_job(name, mode, target, execute)
    record = {"request": value[:SHOWN], "at": cond.rfc3339(now)}
    if failed is None:
        now_msg = result.status.get("message") or status.get("message") or ""
        msg = f"{asked}: nothing to retry, no step has failed that runs again" + (
            f" (phase {result.status.get('phase')}: {now_msg})" if now_msg else "")
        result.status["retry"] = {**record, "result": "nothing to retry"}
        result.events.append(Event("Normal", "NothingToRetry", msg))
        return result
    job, what = failed
    msg = f"{asked}: starting {what} again (deleting the failed Job {job})"
    result.status["retry"] = {**record, "result": f"deleted Job {job}"}
    result.events.append(Event("Normal", "Retrying", msg))
    result.action = DeleteFailedJob(job)
    return result
