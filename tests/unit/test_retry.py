"""The retry annotation: each new value starts a failed step again, once; nothing else moves."""

from typing import Any

from dbmigrate import executeplan as xp
from dbmigrate import planner, retry
from dbmigrate.observed import ExecuteObservation, JobObservation, PeerMigration, TargetObservation

from .test_executeplan import LOGICAL_BLOCKER, OLD_SELECTOR, checked, merged
from .test_executeplan import step as xstep
from .test_planner import FULL as TFULL
from .test_planner import IMAGES, NOW, SMOKE_SPEC, SPEC, WORKERS, _checked, _verified, cond, obs

FAILED = JobObservation(failed=True, result={"ok": False, "error": "CommandFailed: pg_restore exited 1"})


def tstep(status: dict[str, Any], job: JobObservation | None, request: str | None,
          spec: dict[str, Any] | None = None, smoke: JobObservation | None = None) -> planner.Plan:
    t = TargetObservation(TFULL, 1, job=job, smoke_job=smoke)
    return planner.plan(spec or SPEC, status, 1, obs(), NOW, target=t, images=IMAGES, worker_images=WORKERS,
                        name="m1", namespace="ns", retry_request=request)


def test_a_new_value_deletes_the_failed_copy_job_once() -> None:
    st = _checked()
    failed = tstep(st, FAILED, None)
    assert failed.status["phase"] == "Failed" and failed.action is None
    hint = cond(failed.status, "Reconciling")["message"]
    assert "kubectl annotate migration m1 dbmigrate.dev/retry=<new value> --overwrite" in hint
    assert "or delete Job m1-copy" in hint
    st = {**st, **failed.status}
    p = tstep(st, FAILED, "1")
    assert p.action == retry.DeleteFailedJob("m1-copy")
    assert p.status["retry"] == {"request": "1", "at": "2026-03-01T12:00:00Z", "result": "deleted Job m1-copy"}
    assert [(e.type, e.reason) for e in p.events] == [("Normal", "Retrying")]
    assert "dbmigrate.dev/retry='1': starting the copy again (deleting the failed Job m1-copy)" in p.events[0].message
    st = {**st, **p.status}
    # The same value, seen again (the Job not yet gone, or the manifest re-applied): nothing more.
    again = tstep(st, FAILED, "1")
    assert again.action is None and again.events == [] and again.status.get("retry", st["retry"]) == st["retry"]
    # Job gone: the copy is created again, as after a deletion by hand; the record stays.
    restarted = tstep(st, None, "1")
    assert restarted.action == planner.CreateCopyJob("dbmigrate-worker:17")
    # A later failure needs a new value.
    assert tstep(st, FAILED, "2").action == retry.DeleteFailedJob("m1-copy")


def test_a_failed_verification_is_retried_too() -> None:
    diff = JobObservation(failed=True, result={"ok": False, "diff": "s.t: 10 rows on source, 9 on target"})
    st = {**_checked(), **tstep(_checked(), diff, None).status}
    assert tstep(st, diff, "x").action == retry.DeleteFailedJob("m1-copy")


def test_nothing_failed_is_recorded_and_told() -> None:
    st = _checked()
    p = tstep(st, JobObservation(active=1), "retry-now")
    assert p.action is None
    assert p.status["retry"]["result"] == "nothing to retry" and p.status["retry"]["request"] == "retry-now"
    ev = p.events[-1]
    assert (ev.type, ev.reason) == ("Normal", "NothingToRetry")
    assert "nothing to retry" in ev.message and "phase Copying" in ev.message
    # Recorded: the same value is not told twice.
    assert tstep({**st, **p.status}, JobObservation(active=1), "retry-now").events == []


def test_a_request_while_work_is_under_way_is_answered_and_the_work_goes_on() -> None:
    """Not held for later: it would retry a failure that happened after it was made."""
    st = _checked()
    p = tstep(st, None, "1")  # the copy Job is to be created
    assert p.action == planner.CreateCopyJob("dbmigrate-worker:17")
    assert p.status["retry"]["result"] == "nothing to retry"
    assert [e.reason for e in p.events if e.reason in ("Retrying", "NothingToRetry")] == ["NothingToRetry"]
    # That value is spent: the copy failing later needs a new one.
    st = {**st, **p.status}
    assert tstep(st, FAILED, "1").action is None


def test_a_migration_stalled_for_another_reason_is_not_retried() -> None:
    """Its failed Job would not be created again (the source is gone): deleting it does nothing."""
    st = {**_checked(), **tstep(_checked(), FAILED, None).status}
    t = TargetObservation(TFULL, 1, job=FAILED)
    p = planner.plan(SPEC, st, 1, obs(full=False), NOW, target=t, images=IMAGES, worker_images=WORKERS,
                     name="m1", namespace="ns", retry_request="1")
    assert p.action is None and p.status["retry"]["result"] == "nothing to retry"
    assert p.events[-1].reason == "NothingToRetry" and "StatefulSet" in p.events[-1].message  # what it waits on


def test_no_retry_while_another_migration_works_on_the_source() -> None:
    """Retrying the older, failed Migration would put it back in front of the newer one (which
    may be an execute that stopped writes): the newer one keeps the source."""
    st = {**_checked(), **tstep(_checked(), FAILED, None).status}
    t = TargetObservation(TFULL, 1, job=FAILED)
    newer = PeerMigration("m2", "pg", "SwitchingOver", "2026-03-01T13:00:00Z")
    p = planner.plan(SPEC, st, 1, obs(), NOW, target=t, images=IMAGES, worker_images=WORKERS, name="m1",
                     namespace="ns", peers=[newer], created="2026-03-01T11:00:00Z", retry_request="1")
    assert p.action is None and p.status["retry"]["result"] == "nothing to retry"
    assert "Migration 'm2' (phase SwitchingOver) is working on StatefulSet 'pg'" in p.events[-1].message
    # A finished one is no obstacle.
    done = PeerMigration("m2", "pg", "Completed", "2026-03-01T13:00:00Z")
    p = planner.plan(SPEC, st, 1, obs(), NOW, target=t, images=IMAGES, worker_images=WORKERS, name="m1",
                     namespace="ns", peers=[done], created="2026-03-01T11:00:00Z", retry_request="1")
    assert p.action == retry.DeleteFailedJob("m1-copy")


def test_a_job_not_deleted_is_said_where_the_retry_was_recorded() -> None:
    st = {"retry": {"request": "1", "at": "2026-03-01T12:00:00Z", "result": "deleted Job m1-copy"}}
    p = retry.not_done(st, "m1-copy", "it is gone already, or not this Migration's")
    assert p.status == {"retry": {"request": "1", "at": "2026-03-01T12:00:00Z", "result": (
        "Job m1-copy was not deleted (it is gone already, or not this Migration's); "
        "set dbmigrate.dev/retry to a new value to try again")}}
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "RetryFailed")]


def test_a_failed_smoke_test_is_retried() -> None:
    st, _ = _verified(SMOKE_SPEC)
    bad = JobObservation(failed=True, result={"output": "ERROR: relation \"orders\" does not exist"})
    failed = tstep(st, JobObservation(succeeded=True), None, SMOKE_SPEC, bad)
    assert "dbmigrate.dev/retry=<new value>" in cond(failed.status, "SmokeTestPassed")["message"]
    st = {**st, **failed.status}
    p = tstep(st, JobObservation(succeeded=True), "after-fix", SMOKE_SPEC, bad)
    assert p.action == retry.DeleteFailedJob("m1-smoke") and p.status["retry"]["result"] == "deleted Job m1-smoke"
    assert "starting your smoke test again" in p.events[-1].message


def test_a_long_value_is_kept_short_and_still_acted_on_once() -> None:
    st = {**_checked(), **tstep(_checked(), FAILED, None).status}
    value = "x" * 300
    p = tstep(st, FAILED, value)
    assert p.action == retry.DeleteFailedJob("m1-copy") and p.status["retry"]["request"] == "x" * retry.SHOWN
    assert tstep({**st, **p.status}, FAILED, value).action is None


def test_execute_schema_copy_is_retried() -> None:
    st = checked()
    failed_schema = JobObservation(failed=True, result={"ok": False, "error": "role exists"})
    x = ExecuteObservation(schema_job=failed_schema, service_selector=dict(OLD_SELECTOR))
    p = xstep(st, x)
    assert p.status["phase"] == "Failed"
    assert "or delete Job m1-schema" in cond(p.status, "Reconciling")["message"]
    st = merged(st, p)
    p = xstep(st, x, retry_request="1")
    assert p.action == retry.DeleteFailedJob("m1-schema") and p.events[-1].reason == "Retrying"
    assert "starting the copy of roles and schema again" in p.events[-1].message
    # Job gone: the schema copy starts again.
    assert xstep(merged(st, p), ExecuteObservation(service_selector=dict(OLD_SELECTOR)),
                 retry_request="1").action == xp.CreateSchemaJob("worker:18")


def test_execute_dump_copy_failure_is_not_retried() -> None:
    """Its failure gave the writes back and ended the execute: a new Migration retries."""
    st = merged(checked([LOGICAL_BLOCKER]), xstep(checked([LOGICAL_BLOCKER])))
    failed = JobObservation(failed=True, result={"ok": False, "error": "disk full"})
    st = merged(st, xstep(st, job=failed))
    assert retry.failed_job("m1", "execute", TargetObservation(TFULL, 1, job=failed),
                            ExecuteObservation(service_selector=dict(OLD_SELECTOR))) is None
    assert retry.apply(planner.Plan(status={}), "1", st, "m1", "execute", TargetObservation(TFULL, 1, job=failed),
                       ExecuteObservation(service_selector=dict(OLD_SELECTOR)), NOW).status["retry"]["result"] == (
        "nothing to retry")


def test_an_execute_never_retries_a_smoke_test() -> None:
    """An execute runs no smoke test: a failed one left from the test is not "retried"."""
    left = TargetObservation(TFULL, 1, smoke_job=JobObservation(failed=True))
    assert retry.failed_job("m1", "execute", left, ExecuteObservation(service_selector=dict(OLD_SELECTOR))) is None
    assert retry.failed_job("m1", "test", left, None) == ("m1-smoke", "your smoke test")
