"""The execute state machine, step by step, including the crash and abort paths."""

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbmigrate import executeplan as xp
from dbmigrate import planner
from dbmigrate.api import parse_spec
from dbmigrate.observed import (
    ContainerInfo,
    ExecuteObservation,
    JobObservation,
    ReplicationObservation,
    SecretInfo,
    ServiceInfo,
    SourceObservation,
    StatefulSetInfo,
    TargetObservation,
)
from dbmigrate.podstatus import PodProblem

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UID = "1234abcd-0000-0000-0000-000000000000"
SPEC: dict[str, Any] = {"mode": "execute",
                        "source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "pg-admin"},
                        "target": {"version": "18"}, "execute": {"maxWriteDowntime": "20s"}}
OLD_SELECTOR = {"app": "pg"}
TARGET_LABELS = {"app.kubernetes.io/managed-by": "dbmigrate", "app.kubernetes.io/name": "postgresql",
                 "app.kubernetes.io/component": "target", "dbmigrate.dev/migration": "m1"}
FULL = frozenset({"Secret", "Service", "Service/headless", "NetworkPolicy", "StatefulSet"})
SOURCE = SourceObservation("ns", StatefulSetInfo("pg", (ContainerInfo("postgres", "postgres:15"),), {"app": "pg"}),
                           ServiceInfo("pg", dict(OLD_SELECTOR), (5432,)),
                           SecretInfo("pg-admin", frozenset({"username", "password"})))


def cond(status: dict[str, Any], t: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == t)


def step(status: dict[str, Any], x: ExecuteObservation | None = None, job: JobObservation | None = None,
         spec: dict[str, Any] | None = None, now: datetime = NOW,
         source: SourceObservation | None = SOURCE, target: TargetObservation | None = None,
         wal_free_min_bytes: int | None = None, retry_request: str | None = None) -> planner.Plan:
    t = TargetObservation(FULL, 1, job=job) if target is None else target
    return planner.plan(spec or SPEC, status, 1, source, now, target=t,
                        images={18: "postgres:18"}, worker_images={18: "worker:18"}, name="m1", namespace="ns",
                        uid=UID, execute=x or ExecuteObservation(service_selector=dict(OLD_SELECTOR)),
                        wal_free_min_bytes=wal_free_min_bytes, retry_request=retry_request)


def checked(findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    p = step({})
    assert p.action == planner.RunPreflight()
    after = planner.after_preflight(p.status, 1, NOW, [], None, 1000)
    st = {**p.status, **after.status}
    if findings is not None:
        st["findings"] = findings
    return st


def merged(st: dict[str, Any], p: planner.Plan) -> dict[str, Any]:
    return {k: v for k, v in {**st, **p.status}.items() if v is not None}


def fenced(st: dict[str, Any]) -> dict[str, Any]:
    """The status after the FenceSource action succeeded."""
    return merged(st, xp.after_fence(st, 1, NOW))


LOGICAL_BLOCKER = {"severity": "blocker", "code": "no_primary_key", "object": "db.t", "appliesTo": "logical"}


@pytest.mark.parametrize(("strategy", "findings", "expected"), [
    ("auto", [], ("logical", None)),
    ("auto", [LOGICAL_BLOCKER], ("dump", None)),
    ("dump", [], ("dump", None)),
    ("logical", [], ("logical", None)),
])
def test_choose_strategy(strategy: str, findings: list[dict[str, Any]], expected: tuple[str, None]) -> None:
    spec = parse_spec({**SPEC, "execute": {"strategy": strategy}})
    assert xp.choose_strategy(spec, findings) == expected


def test_logical_forced_on_blocked_source_stalls() -> None:
    spec = {**SPEC, "execute": {"strategy": "logical"}}
    p = step(checked([LOGICAL_BLOCKER]), spec=spec)
    assert p.status["phase"] == "Checking" and cond(p.status, "Stalled")["reason"] == "StrategyBlocked"
    assert "no_primary_key on db.t" in p.status["message"] and p.action is None


def test_logical_happy_path_to_completed() -> None:
    st = checked()
    p = step(st)
    assert p.action == xp.CreateSchemaJob("worker:18") and p.status["strategy"] == "logical"
    assert "StrategyLogical" in [e.reason for e in p.events]
    st = merged(st, p)
    p = step(st, ExecuteObservation(schema_job=JobObservation(active=1), service_selector=OLD_SELECTOR))
    assert p.status["phase"] == "Copying" and p.action is None
    done = JobObservation(succeeded=True)
    p = step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR))
    assert p.action == xp.StartReplication("1234abcd") and p.status["phase"] == "Replicating"
    st = merged(st, p)
    syncing = ReplicationObservation(databases=3, subscribed=3, initial_sync_done=False, lag_bytes=10**9,
                                     tables_synced=4, tables_total=10, bytes_copied=420)
    p = step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR, replication=syncing))
    assert p.action is None and p.status["replication"]["initialSyncDone"] is False
    # The initial copy's progress, against the 1000 bytes the check measured on the source.
    assert p.status["progress"] == {"percent": 42, "display": "42%", "bytesCopied": 420, "bytesTotal": 1000,
                                    "tablesCopied": 4, "tablesTotal": 10}
    assert p.status["message"].startswith("replicating (initial copy of the tables: 4 of 10 done, 42%;")
    # Never backwards (a vacuum on the target may shrink it), never 100 % before the last table.
    p2 = step(merged(st, p), ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR,
                                                replication=dataclasses.replace(syncing, bytes_copied=300)))
    assert p2.status["progress"]["bytesCopied"] == 420
    p3 = step(merged(st, p), ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR,
                                                replication=dataclasses.replace(syncing, bytes_copied=5000)))
    assert p3.status["progress"]["percent"] == 99
    caught_up = ReplicationObservation(3, 3, True, 1024, 0.2)
    p = step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR, replication=caught_up))
    assert p.action == xp.Switchover("1234abcd", 20.0) and p.status["phase"] == "SwitchingOver"
    assert p.status["switchover"] == {"startedAt": "2026-03-01T12:00:00Z", "previousSelector": OLD_SELECTOR}
    assert p.status["progress"]["percent"] == 100  # initial sync done: the data is in
    done_sync = step(merged(st, step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR,
                                                            replication=syncing))), ExecuteObservation(
        schema_job=done, service_selector=OLD_SELECTOR, replication=caught_up))
    assert done_sync.status["progress"] == {"percent": 100, "display": "100%", "bytesCopied": 1000,
                                            "bytesTotal": 1000, "tablesCopied": 10, "tablesTotal": 10}
    st = merged(st, p)
    after = xp.after_switchover(st, 1, NOW + timedelta(seconds=2), 0.8)
    assert after.status["locked"] is True and after.status["switchover"]["writeDowntimeSeconds"] == 0.8
    assert [e.reason for e in after.events] == ["PointOfNoReturn"]
    assert st["replication"]["lagBytes"] == 1024
    assert after.status["replication"] == {"lagBytes": 0, "lagSeconds": 0, "initialSyncDone": True,
                                           "databases": 3}
    st = merged(st, after)
    # Past the point of no return the source no longer resolves the same way (its Service selects
    # the new pods): nothing is re-checked, only forward.
    p = step(st, ExecuteObservation(service_selector=TARGET_LABELS), source=None)
    assert p.action == xp.Finalize("1234abcd", "logical") and p.status["locked"] is True
    fin = xp.after_finalize(merged(st, p), 1, NOW + timedelta(seconds=5), parse_spec(SPEC))
    assert fin.status["phase"] == "Completed" and cond(fin.status, "Ready")["status"] == "True"
    assert fin.status["switchover"]["retainSourceUntil"] == "2026-03-08T12:00:05Z"
    assert fin.status["progress"]["percent"] == 100 and fin.status["progress"]["bytesTotal"] == 1000
    st = merged(st, fin)
    p = step(st, ExecuteObservation(service_selector=TARGET_LABELS), source=None)
    assert p.action is None and p.status["phase"] == "Completed" and p.events == []


def test_crash_after_repoint_rolls_forward() -> None:
    st = {**checked(), "strategy": "logical",
          "switchover": {"startedAt": "2026-03-01T11:59:00Z", "previousSelector": OLD_SELECTOR}}
    p = step(st, ExecuteObservation(schema_job=JobObservation(succeeded=True), service_selector=TARGET_LABELS))
    assert p.status["switchover"]["pointOfNoReturnAt"] == "2026-03-01T11:59:00Z" and p.status["locked"] is True


def test_crash_before_repoint_unfences_and_replicates_again() -> None:
    st = {**checked(), "strategy": "logical",
          "switchover": {"startedAt": "2026-03-01T11:59:00Z", "previousSelector": OLD_SELECTOR}}
    p = step(st, ExecuteObservation(schema_job=JobObservation(succeeded=True), service_selector=OLD_SELECTOR))
    assert p.action == xp.RecoverSwitchover("1234abcd") and p.status["phase"] == "Replicating"
    assert p.status["switchover"] is None
    assert ("Warning", "SwitchoverRecovered") in [(e.type, e.reason) for e in p.events]
    assert "locked" not in p.status


def test_abort_fails_cleanly_and_stays_failed() -> None:
    """An abort is terminal: later reconciles never fence or replicate again; they only retry
    the removal of the replication objects until it worked."""
    st = merged(checked(), step(checked()))
    done = JobObservation(succeeded=True)
    st = merged(st, step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR)))
    st = merged(st, step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR,
                                                replication=ReplicationObservation(3, 3, True, 10, 0.1))))
    p = xp.after_abort(st, 1, NOW, "timed out after 20.0s", cleaned=False)
    assert p.status["phase"] == "Failed" and p.status["switchover"]["abortedAt"]
    assert "serves writes as before" in p.status["message"]
    assert ("Warning", "SwitchoverAborted") in [(e.type, e.reason) for e in p.events]
    st = merged(st, p)
    idle = ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR)
    p = step(st, idle)
    assert p.action == xp.RestoreSource("1234abcd", "logical") and p.status["phase"] == "Failed"
    assert p.events == []  # no phase change, nothing new to say
    st = merged(st, xp.after_restore(st, 1, NOW))
    for _ in range(2):
        p = step(st, idle)
        assert p.action is None and p.status["phase"] == "Failed"
        assert p.status["message"] == st["message"]
        st = merged(st, p)


def test_dump_path() -> None:
    st = checked([LOGICAL_BLOCKER])  # auto falls back to dump
    p = step(st)
    assert p.action == xp.FenceSource() and p.status["strategy"] == "dump"
    ev = next(e for e in p.events if e.reason == "StrategyDump")
    assert ev.type == "Warning" and "grows with the data size" in ev.message
    assert p.status["switchover"]["fencedAt"] == "2026-03-01T12:00:00Z"
    st = merged(st, p)
    assert step(st).action == xp.FenceSource(), "no copy before the fence is confirmed"
    st = fenced(st)
    assert st["switchover"]["fenceConfirmedAt"] == "2026-03-01T12:00:00Z"
    assert step(st).action == planner.CreateCopyJob("worker:18")
    # Writes are stopped: the copy shows how far it got (target bytes against the source's 1000).
    p = step(st, target=TargetObservation(FULL, 1, job=JobObservation(active=1), bytes_copied=250))
    assert p.action is None and p.status["progress"]["percent"] == 25
    assert p.status["message"] == "strategy dump: copying while writes are stopped (25%)"
    p = step(st, job=JobObservation(succeeded=True, result={"ok": True}))
    assert p.action == xp.Repoint() and p.status["progress"]["percent"] == 100
    later = NOW + timedelta(seconds=90)
    p = step(st, ExecuteObservation(service_selector=TARGET_LABELS), job=JobObservation(succeeded=True), now=later)
    assert p.status["switchover"]["writeDowntimeSeconds"] == 90.0 and p.status["locked"] is True


def _server(wal: str, ready: int = 1, rolled_out: bool = True, job: JobObservation | None = None
            ) -> TargetObservation:
    return TargetObservation(FULL, ready, job=job, wal_level=wal, rolled_out=rolled_out)


def test_a_big_dump_loads_without_wal_and_gets_it_back_before_the_repoint() -> None:
    """checked() measured 1000 bytes on the source: at the threshold, the copy goes WAL-free."""
    st = checked([LOGICAL_BLOCKER])
    # Before the fence (writes still flow): restart the new server with wal_level=minimal.
    p = step(st, target=_server("logical"), wal_free_min_bytes=1000)
    assert p.action == xp.SetTargetWal("minimal") and not p.status.get("switchover")
    assert cond(p.status, "Reconciling")["reason"] == "TargetWithoutWal"
    st = merged(st, p)
    for restarting, reason in ((_server("minimal", ready=1, rolled_out=False), "TargetRestarting"),
                               (_server("minimal", ready=0), "TargetStarting")):
        p = step(st, target=restarting, wal_free_min_bytes=1000)
        assert p.action is None and not p.status.get("switchover"), "never fenced while it restarts"
        assert cond(p.status, "Reconciling")["reason"] == reason
    p = step(st, target=_server("minimal"), wal_free_min_bytes=1000)
    assert p.action == xp.FenceSource()
    st = fenced(merged(st, p))
    assert step(st, target=_server("minimal"), wal_free_min_bytes=1000).action == planner.CreateCopyJob("worker:18")
    # Copied and verified: WAL back on (within the interruption), then the repoint.
    done = JobObservation(succeeded=True, result={"ok": True})
    p = step(st, target=_server("minimal", job=done), wal_free_min_bytes=1000)
    assert p.action == xp.SetTargetWal("logical")
    assert p.status["switchover"]["targetRestartedAt"] == "2026-03-01T12:00:00Z"
    assert p.status["switchover"]["fencedAt"] == st["switchover"]["fencedAt"]
    st = merged(st, p)
    soon = NOW + timedelta(seconds=30)
    p = step(st, target=_server("logical", ready=0, job=done), now=soon, wal_free_min_bytes=1000)
    assert p.action is None and cond(p.status, "Reconciling")["reason"] == "RestartingTarget"
    p = step(st, target=_server("logical", job=done), now=soon, wal_free_min_bytes=1000)
    assert p.action == xp.Repoint()
    # A server that never comes back: the source is unfenced, the Migration fails.
    late = NOW + timedelta(seconds=xp.TARGET_RESTART_SECONDS + 1)
    p = step(st, target=_server("logical", ready=0, job=done), now=late, wal_free_min_bytes=1000)
    assert p.action == xp.RestoreSource("1234abcd", "dump") and p.status["phase"] == "Failed"
    assert "TargetRestartFailed" in [e.reason for e in p.events]
    # A server known not to come back (its pod crash-loops): writes are given back at once.
    crash = PodProblem("CrashLoopBackOff", "pod m1-target-0, container postgres: CrashLoopBackOff",
                       "see its logs", needs_person=True)
    dead = TargetObservation(FULL, 0, job=done, wal_level="logical", rolled_out=True, pod_problem=crash)
    p = step(st, target=dead, now=soon, wal_free_min_bytes=1000)
    assert p.action == xp.RestoreSource("1234abcd", "dump") and p.status["phase"] == "Failed"
    assert "cannot start after its restart" in p.status["message"] and "CrashLoopBackOff" in p.status["message"]
    # A failed pull of the image it ran a minute ago may pass: it waits, within the bound, saying why.
    pull = PodProblem("ImagePullBackOff", "pod m1-target-0, container postgres: ImagePullBackOff: x", "check",
                      needs_person=True)
    p = step(st, target=dataclasses.replace(dead, pod_problem=pull), now=soon, wal_free_min_bytes=1000)
    assert p.action is None and cond(p.status, "Reconciling")["reason"] == "RestartingTarget"
    assert p.status["message"].endswith("ImagePullBackOff: x")


@pytest.mark.parametrize("threshold", [1001, None])
def test_a_small_dump_keeps_its_wal(threshold: int | None) -> None:
    """Below the threshold (or with it off) no restart: a restart would cost more than the WAL."""
    st = checked([LOGICAL_BLOCKER])
    p = step(st, target=_server("logical"), wal_free_min_bytes=threshold)
    assert p.action == xp.FenceSource()
    done = JobObservation(succeeded=True, result={"ok": True})
    assert step(merged(st, p), target=_server("logical", job=done), wal_free_min_bytes=threshold
                ).action == xp.Repoint()


def test_a_dump_repoint_is_recorded_at_once_and_survives_a_lost_record() -> None:
    """Seen for real in e2e: after the repoint the source Service selects the new server, which
    the source checks call a mismatch; the Migration must roll forward, not stall in Pending."""
    st = merged(checked([LOGICAL_BLOCKER]), step(checked([LOGICAL_BLOCKER])))
    later = NOW + timedelta(seconds=42)
    p = xp.after_repoint(st, 1, later)
    assert p.status["switchover"]["pointOfNoReturnAt"] == "2026-03-01T12:00:42Z"
    assert p.status["switchover"]["writeDowntimeSeconds"] == 42.0 and p.status["locked"] is True
    # The record was lost (crash right after the repoint): the Service tells.
    moved = SourceObservation("ns", SOURCE.statefulset, ServiceInfo("pg", dict(TARGET_LABELS), (5432,)),
                              SOURCE.secret)
    p = step(st, ExecuteObservation(service_selector=TARGET_LABELS), job=JobObservation(succeeded=True),
             source=moved, now=later)
    assert p.status["phase"] == "SwitchingOver" and p.status["switchover"]["pointOfNoReturnAt"]
    assert p.status["locked"] is True


def test_a_dump_never_copies_before_its_fence_is_confirmed() -> None:
    """fencedAt is recorded before the fence is made. A fence that failed (the source
    unreachable for a moment) is retried, never skipped: a copy of a source still taking writes
    would lose the writes after its snapshot at the repoint. One that keeps failing gives up and
    resets the source (a partial fence may already refuse writes)."""
    st = checked([LOGICAL_BLOCKER])
    st = merged(st, step(st))
    failed = planner.after_error(st, 1, NOW, "fence source", "connection refused")
    st = merged(st, failed)
    for later in (1, 30, xp.FENCE_SECONDS):
        p = step(st, now=NOW + timedelta(seconds=later))
        assert p.action == xp.FenceSource() and p.status["phase"] == "SwitchingOver"
        assert cond(p.status, "Reconciling")["reason"] == "Fencing"
    p = step(st, now=NOW + timedelta(seconds=xp.FENCE_SECONDS + 1))
    assert p.action == xp.RestoreSource("1234abcd", "dump") and p.status["phase"] == "Failed"
    assert cond(p.status, "Stalled")["reason"] == "FenceFailed"
    assert "FenceFailed" in [e.reason for e in p.events if e.type == "Warning"]
    # A copy Job that exists was started after a fence (by an operator from before the record).
    assert step(st, job=JobObservation(active=1)).action is None


def test_dump_copy_failure_unfences() -> None:
    st = merged(checked([LOGICAL_BLOCKER]), step(checked([LOGICAL_BLOCKER])))
    p = step(st, job=JobObservation(failed=True, result={"ok": False, "error": "disk full"}))
    assert p.action == xp.RestoreSource("1234abcd", "dump") and p.status["phase"] == "Failed"
    assert "disk full" in p.status["message"] and p.status["switchover"]["abortedAt"]
    # Terminal: the failed Job is still there, but the source is never fenced again.
    st = merged(st, p)
    p = step(st, job=JobObservation(failed=True, result={"ok": False, "error": "disk full"}))
    assert p.action == xp.RestoreSource("1234abcd", "dump")  # until it has worked
    st = merged(st, xp.after_restore(st, 1, NOW))
    p = step(st, job=JobObservation(failed=True, result={"ok": False, "error": "disk full"}))
    assert p.action is None and p.status["phase"] == "Failed"


def test_test_then_execute_removes_the_test_server_first() -> None:
    test_status = {"phase": "Ready", "target": {"provisionedFor": "test"}, "testServer": {"host": "h"},
                   "conditions": [{"type": "CopyVerified", "status": "True", "reason": "CopyVerified", "message": "",
                                   "lastTransitionTime": "2026-03-01T10:00:00Z"},
                                  {"type": "SmokeTestPassed", "status": "False", "reason": "SmokeTestFailed",
                                   "message": "... then delete Job m1-smoke)",
                                   "lastTransitionTime": "2026-03-01T10:05:00Z"}]}
    p = step(test_status)
    assert p.action == xp.ResetTestServer()
    assert p.status["testServer"] is None and p.status["target"]["provisionedFor"] == "execute"
    # The test's results go with its server (a failed smoke test's advice no longer holds).
    assert not {c["type"] for c in p.status["conditions"]} & {"CopyVerified", "SmokeTestPassed"}
    nxt = planner.plan(SPEC, merged(test_status, p), 2, SOURCE, NOW, target=TargetObservation(),
                       images={18: "postgres:18"}, name="m1", namespace="ns", uid=UID)
    assert isinstance(nxt.action, planner.EnsureTarget)


GUARDED = {**SPEC, "execute": {"requireSuccessfulTest": {"enabled": True, "maxAge": "24h"}}}


def test_guardrail_waits_for_a_recent_successful_test() -> None:
    from dbmigrate.observed import PeerMigration

    p = step({}, spec=GUARDED)
    assert p.status["phase"] == "Pending" and p.action is None
    assert cond(p.status, "TestRequired")["status"] == "True"
    assert "no test of StatefulSet 'pg' to PostgreSQL 18" in p.status["message"]
    # A test of the same source and version by another Migration, recent enough: go.
    fresh = PeerMigration("t", "pg", "Ready", "2026-03-01T00:00:00Z", "18", "2026-03-01T06:00:00Z")
    ok = planner.plan(GUARDED, {}, 1, SOURCE, NOW, target=TargetObservation(), images={18: "postgres:18"},
                      name="m1", namespace="ns", uid=UID, peers=[fresh])
    assert isinstance(ok.action, planner.EnsureTarget)
    assert not any(c["type"] == "TestRequired" for c in ok.status["conditions"])
    # Too old, or another target version, or another source: still waiting.
    for peer in (PeerMigration("t", "pg", "Ready", "x", "18", "2026-02-27T06:00:00Z"),
                 PeerMigration("t", "pg", "Ready", "x", "17", "2026-03-01T06:00:00Z"),
                 PeerMigration("t", "other", "Ready", "x", "18", "2026-03-01T06:00:00Z")):
        assert planner.test_required(GUARDED, {}, "m1", [peer], NOW) is not None
    # Its own earlier test (test -> execute) counts too.
    own = {"testPassedAt": "2026-03-01T11:00:00Z", "testTargetVersion": "18"}
    assert planner.test_required(GUARDED, own, "m1", [], NOW) is None


def test_ready_records_when_the_test_passed() -> None:
    from dbmigrate.observed import JobObservation as J

    test_spec = {**SPEC, "mode": "test"}
    st = {}
    p = planner.plan(test_spec, st, 1, SOURCE, NOW, target=TargetObservation(FULL, 1), images={18: "postgres:18"})
    st = {**p.status, **planner.after_preflight(p.status, 1, NOW, [], None, 10).status}
    p = planner.plan(test_spec, st, 1, SOURCE, NOW, target=TargetObservation(FULL, 1, job=J(succeeded=True)),
                     images={18: "postgres:18"}, worker_images={18: "w"}, name="m1", namespace="ns")
    assert p.status["phase"] == "Ready"
    assert p.status["testPassedAt"] == "2026-03-01T12:00:00Z" and p.status["testTargetVersion"] == "18"


MANUAL = {**SPEC, "execute": {"maxWriteDowntime": "20s", "switchover": "Manual"}}


def test_manual_switchover_waits_for_the_annotation_then_switches() -> None:
    done = JobObservation(succeeded=True)
    caught_up = ReplicationObservation(2, 2, True, 512, 0.1)
    st = merged(checked(), step(checked(), spec=MANUAL))
    st = merged(st, step(st, ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR), spec=MANUAL))
    waiting = ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR, replication=caught_up)
    p = step(st, waiting, spec=MANUAL)
    assert p.action is None and p.status["phase"] == "Replicating" and "switchover" not in p.status
    c = cond(p.status, "SwitchoverApproved")
    assert (c["status"], c["reason"]) == ("False", "AwaitingApproval")
    assert "kubectl annotate migration m1 dbmigrate.dev/approve-switchover=true" in p.status["message"]
    assert [e.reason for e in p.events] == ["AwaitingApproval"]
    st = merged(st, p)
    # Waiting again: no second Event.
    p = step(st, waiting, spec=MANUAL)
    assert p.action is None and "AwaitingApproval" not in [e.reason for e in p.events]
    approved = ExecuteObservation(schema_job=done, service_selector=OLD_SELECTOR, replication=caught_up,
                                  switchover_approved=True)
    p = step(st, approved, spec=MANUAL)
    assert p.action == xp.Switchover("1234abcd", 20.0) and p.status["phase"] == "SwitchingOver"
    assert cond(p.status, "SwitchoverApproved")["status"] == "True"


def test_manual_dump_waits_before_fencing() -> None:
    spec = {**MANUAL, "execute": {**MANUAL["execute"], "strategy": "dump"}}
    st = checked()
    p = step(st, spec=spec)
    assert p.action is None and cond(p.status, "SwitchoverApproved")["reason"] == "AwaitingApproval"
    p = step(merged(st, p), ExecuteObservation(service_selector=OLD_SELECTOR, switchover_approved=True), spec=spec)
    assert p.action == xp.FenceSource()


def test_automatic_switchover_ignores_approval() -> None:
    caught_up = ReplicationObservation(1, 1, True, 0, 0.0)
    st = merged(checked(), step(checked()))
    p = step(st, ExecuteObservation(schema_job=JobObservation(succeeded=True), service_selector=OLD_SELECTOR,
                                    replication=caught_up))
    assert isinstance(p.action, xp.Switchover)
    assert all(c["type"] != "SwitchoverApproved" for c in p.status["conditions"])


@pytest.mark.parametrize(("strategy", "switchover", "stopped"), [
    ("dump", {}, False),
    ("logical", {"startedAt": "t"}, False),                               # one step does it all
    ("dump", {"fencedAt": "t"}, True),                                    # copying, restarting
    ("dump", {"fencedAt": "t", "targetRestartedAt": "t"}, True),
    ("dump", {"fencedAt": "t", "pointOfNoReturnAt": "t"}, False),         # writes go to the new server
    ("dump", {"abortedAt": "t", "sourceRestored": False}, True),          # still to unfence
    ("dump", {"abortedAt": "t", "sourceRestored": True}, False),
    ("logical", {"abortedAt": "t", "sourceRestored": False}, False),      # unfenced; cleanup retried
])
def test_writes_stopped_gets_the_fast_timer(strategy: str, switchover: dict[str, Any], stopped: bool) -> None:
    assert xp.writes_stopped({"strategy": strategy, "switchover": switchover}) is stopped


@pytest.mark.parametrize(("status", "selector", "steps"), [
    # Not started, or test mode reached nothing on the source: nothing to do.
    ({}, OLD_SELECTOR, []),
    ({"strategy": "logical", "phase": "Copying"}, OLD_SELECTOR, []),
    # Replicating: the slot and publication must go with the Migration.
    ({"strategy": "logical", "phase": "Replicating"}, OLD_SELECTOR, [xp.RestoreSource("1234abcd", "logical")]),
    ({"strategy": "logical", "phase": "Failed", "replication": {"lagBytes": 0}}, OLD_SELECTOR,
     [xp.RestoreSource("1234abcd", "logical")]),
    # A switchover cut short: unfence, then drop the replication objects.
    ({"strategy": "logical", "switchover": {"startedAt": "t"}}, OLD_SELECTOR,
     [xp.RecoverSwitchover("1234abcd"), xp.RestoreSource("1234abcd", "logical")]),
    # Aborted and already restored: nothing; aborted, not yet restored: restore.
    ({"strategy": "logical", "switchover": {"abortedAt": "t", "sourceRestored": True}}, OLD_SELECTOR, []),
    ({"strategy": "dump", "switchover": {"fencedAt": "t", "abortedAt": "t", "sourceRestored": False}},
     OLD_SELECTOR, [xp.RestoreSource("1234abcd", "dump")]),
    # Strategy dump, fenced for its copy: unfence.
    ({"strategy": "dump", "switchover": {"fencedAt": "t"}}, OLD_SELECTOR, [xp.RestoreSource("1234abcd", "dump")]),
    # Past the point of no return, recorded or not (the Service already selects the new server):
    # finish, so that the new server is not collected with the Migration.
    ({"strategy": "logical", "switchover": {"startedAt": "t", "pointOfNoReturnAt": "t"}}, TARGET_LABELS,
     [xp.Finalize("1234abcd", "logical")]),
    ({"strategy": "dump", "switchover": {"fencedAt": "t"}}, TARGET_LABELS, [xp.Finalize("1234abcd", "dump")]),
    ({"strategy": "logical", "switchover": {"pointOfNoReturnAt": "t", "completedAt": "t"}}, TARGET_LABELS, []),
])
def test_what_a_deleted_execute_does_before_it_goes(status: dict[str, Any], selector: dict[str, str],
                                                   steps: list[object]) -> None:
    assert xp.before_delete(status, "1234abcd-0000", "m1", selector) == steps


PULL = PodProblem("ImagePullBackOff", "pod m1-copy-x, container copy: ImagePullBackOff: nope", "check the worker image",
                  needs_person=True)
NO_NODE = PodProblem("Unschedulable", "pod m1-copy-x cannot be scheduled: 0/1 nodes are available")


def test_a_dump_copy_that_cannot_start_gives_the_writes_back() -> None:
    """A copy Job's pod that cannot start stays active for ever: with writes stopped, the
    source is unfenced at once (image, inputs) or after COPY_START_SECONDS (capacity)."""
    st = merged(checked([LOGICAL_BLOCKER]), step(checked([LOGICAL_BLOCKER])))
    assert st["switchover"]["fencedAt"]
    p = step(st, job=JobObservation(active=1, pod_problem=PULL))
    assert p.action == xp.RestoreSource("1234abcd", "dump") and p.status["phase"] == "Failed"
    assert p.status["message"] == ("the copy Job cannot start (pod m1-copy-x, container copy: ImagePullBackOff: "
                                   "nope); unfencing the source")
    assert cond(p.status, "Reconciling")["message"].startswith("check the worker image; the source serves writes")
    assert "CopyCannotStart" in [e.reason for e in p.events if e.type == "Warning"]
    # Waiting for a node: said while it waits, then given up.
    p = step(st, job=JobObservation(active=1, pod_problem=NO_NODE), now=NOW + timedelta(seconds=30))
    assert p.action is None and p.status["message"].endswith("(0%); pod m1-copy-x cannot be scheduled: "
                                                             "0/1 nodes are available")
    late = NOW + timedelta(seconds=xp.COPY_START_SECONDS + 1)
    assert step(st, job=JobObservation(active=1, pod_problem=NO_NODE), now=late).action == xp.RestoreSource(
        "1234abcd", "dump")


def test_a_dump_without_a_worker_image_never_fences() -> None:
    st = checked([LOGICAL_BLOCKER])
    p = planner.plan(SPEC, st, 1, SOURCE, NOW, target=TargetObservation(FULL, 1), images={18: "postgres:18"},
                     worker_images={}, name="m1", namespace="ns", uid=UID,
                     execute=ExecuteObservation(service_selector=dict(OLD_SELECTOR)))
    assert p.action is None and not p.status.get("switchover")
    assert cond(p.status, "Stalled")["reason"] == "NoWorkerImage"


def test_a_schema_job_that_cannot_start_stalls_once() -> None:
    st = checked()
    p = step(st, ExecuteObservation(schema_job=JobObservation(active=1, pod_problem=PULL),
                                    service_selector=OLD_SELECTOR))
    assert p.action is None and p.status["phase"] == "Copying"
    assert cond(p.status, "Stalled")["reason"] == "JobCannotStart"
    assert p.status["message"].startswith("the Job for copying roles and schema into the target cannot start: ")
    assert [e.reason for e in p.events if e.type == "Warning"] == ["JobCannotStart"]
    again = step(merged(st, p), ExecuteObservation(schema_job=JobObservation(active=1, pod_problem=PULL),
                                                   service_selector=OLD_SELECTOR))
    assert "JobCannotStart" not in [e.reason for e in again.events]
