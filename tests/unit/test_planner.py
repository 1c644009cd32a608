from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbmigrate import planner
from dbmigrate.engines.base import Finding, Severity
from dbmigrate.observed import (
    ContainerInfo,
    JobObservation,
    SecretInfo,
    ServiceInfo,
    SourceObservation,
    StatefulSetInfo,
    TargetObservation,
)
from dbmigrate.podstatus import PodProblem

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGES = {17: "registry.local/postgres:17", 18: "registry.local/postgres:18"}
WORKERS = {17: "dbmigrate-worker:17"}
FULL = frozenset({"Secret", "Service", "Service/headless", "NetworkPolicy", "StatefulSet"})
INFO = Finding(Severity.INFO, "large_objects", "db1", "3 large objects", "copied by dump")
BLOCKER = Finding(Severity.BLOCKER, "extension_missing", "db1.postgis", "postgis is not available", "install it")
LOGICAL_ONLY = Finding(Severity.BLOCKER, "no_primary_key", "db1.public.t", "no key", "add one", "logical")
SPEC: dict[str, Any] = {"source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "pg-admin"},
                        "target": {"version": "17"}}


def sts(image: str = "postgres:15", containers: tuple[ContainerInfo, ...] | None = None,
        labels: dict[str, str] | None = None) -> StatefulSetInfo:
    return StatefulSetInfo("pg", containers or (ContainerInfo("postgres", image),),
                           pod_labels=labels if labels is not None else {"app": "pg", "tier": "db"})


def obs(statefulset: StatefulSetInfo | None = None, service: ServiceInfo | None = None,
        secret: SecretInfo | None = None, *, full: bool = True) -> SourceObservation:
    if full:
        statefulset = statefulset or sts()
        service = service or ServiceInfo("pg", {"app": "pg"}, (5432,))
        secret = secret or SecretInfo("pg-admin", frozenset({"username", "password"}))
    return SourceObservation("ns", statefulset, service, secret)


def cond(status: dict[str, Any], t: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == t)


def reasons(spec: dict[str, Any], o: SourceObservation) -> list[str]:
    resolved, problems = planner.resolve_source(planner.parse_spec(spec), o)
    assert (resolved is None) == bool(problems)
    return [p.reason for p in problems]


def test_all_missing_reports_three_problems() -> None:
    assert reasons(SPEC, obs(full=False)) == [
        "SourceStatefulSetNotFound", "SourceServiceNotFound", "CredentialsSecretNotFound"]


def test_resolved() -> None:
    resolved, problems = planner.resolve_source(planner.parse_spec(SPEC), obs())
    assert problems == [] and resolved == planner.ResolvedSource(15, "postgres:15", "postgres")


@pytest.mark.parametrize(("o", "reason"), [
    (obs(secret=SecretInfo("pg-admin", frozenset({"username"}))), "CredentialsSecretIncomplete"),
    (obs(service=ServiceInfo("pg", {"app": "pg"}, (5433,))), "SourceServicePortMismatch"),
    (obs(service=ServiceInfo("pg", {"app": "other"}, (5432,))), "SourceServiceSelectorMismatch"),
    (obs(service=ServiceInfo("pg", {}, (5432,))), "SourceServiceWithoutSelector"),
    (obs(sts(image="mydb:latest")), "SourceVersionUnknown"),
    (obs(sts(image="postgres:11")), "SourceVersionUnsupported"),
    (obs(sts(image="postgres:17")), "TargetNotNewer"),
    (obs(sts(image="postgres:18")), "SourceVersionUnsupported"),
])
def test_single_problem(o: SourceObservation, reason: str) -> None:
    assert reasons(SPEC, o) == [reason]


def test_container_choice_prefers_postgres_then_first_then_named() -> None:
    two = (ContainerInfo("exporter", "exporter:1.2"), ContainerInfo("postgres", "postgres:16"))
    r, _ = planner.resolve_source(planner.parse_spec(SPEC), obs(sts(containers=two)))
    assert r is not None and r.major == 16 and r.container == "postgres"
    first = (ContainerInfo("db", "postgres:14"), ContainerInfo("sidecar", "sidecar:latest"))
    r, _ = planner.resolve_source(planner.parse_spec(SPEC), obs(sts(containers=first)))
    assert r is not None and r.container == "db" and r.major == 14
    named = {**SPEC, "source": {**SPEC["source"], "containerName": "sidecar"}}
    assert reasons(named, obs(sts(containers=first))) == ["SourceVersionUnknown"]
    missing = {**SPEC, "source": {**SPEC["source"], "containerName": "nope"}}
    assert reasons(missing, obs(sts(containers=first))) == ["SourceContainerNotFound"]


def test_explicit_source_version_wins_over_image() -> None:
    spec = {**SPEC, "source": {**SPEC["source"], "version": "13"}}
    r, _ = planner.resolve_source(planner.parse_spec(spec), obs(sts(image="registry/db:latest")))
    assert r is not None and r.major == 13


def test_custom_secret_keys() -> None:
    spec = {**SPEC, "source": {**SPEC["source"], "usernameKey": "user", "passwordKey": "pw"}}
    assert reasons(spec, obs(secret=SecretInfo("pg-admin", frozenset({"user", "pw"})))) == []
    assert reasons(spec, obs()) == ["CredentialsSecretIncomplete"]


def test_plan_problems_stall_in_pending_with_every_message() -> None:
    p = planner.plan(SPEC, {}, 4, obs(full=False), NOW)
    st = p.status
    assert st["phase"] == "Pending" and st["observedGeneration"] == 4
    for t, s in (("Ready", "False"), ("Stalled", "True"), ("Reconciling", "False"), ("SourceResolved", "False")):
        assert cond(st, t)["status"] == s
        assert cond(st, t)["observedGeneration"] == 4
    msg = cond(st, "SourceResolved")["message"]
    assert "StatefulSet 'pg' not found" in msg and "Service 'pg' not found" in msg and "Secret 'pg-admin'" in msg
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "SourceStatefulSetNotFound"),
                                                      ("Normal", "PhasePending")]


def test_plan_permanent_problem_fails() -> None:
    p = planner.plan(SPEC, {}, 1, obs(sts(image="postgres:17")), NOW)
    assert p.status["phase"] == "Failed"
    assert "create a new Migration" in cond(p.status, "Reconciling")["message"]
    assert ("Warning", "PhaseFailed") in [(e.type, e.reason) for e in p.events]


def test_plan_invalid_spec_is_reported_not_raised() -> None:
    p = planner.plan({"target": {"version": "17"}}, {}, 1, None, NOW)
    assert p.status["phase"] == "Failed" and cond(p.status, "Ready")["reason"] == "InvalidSpec"


def test_plan_resolved_provisions_target_first() -> None:
    p = planner.plan(SPEC, {}, 2, obs(), NOW, images=IMAGES)
    st = p.status
    assert st["phase"] == "Provisioning" and st["sourceVersion"] == "15" and st["sourceImage"] == "postgres:15"
    assert p.action == planner.EnsureTarget("registry.local/postgres:17")
    assert cond(st, "SourceResolved")["status"] == "True"
    assert cond(st, "Ready")["status"] == "False" and cond(st, "Reconciling")["status"] == "True"
    assert not any(c["type"] == "Stalled" for c in st["conditions"])


def test_spec_image_overrides_the_map() -> None:
    spec = {**SPEC, "target": {"version": "17", "image": "mine:17"}}
    assert planner.plan(spec, {}, 1, obs(), NOW, images=IMAGES).action == planner.EnsureTarget("mine:17")


def test_no_image_for_target_is_permanent() -> None:
    p = planner.plan(SPEC, {}, 1, obs(), NOW, images={})
    assert p.status["phase"] == "Failed" and cond(p.status, "Ready")["reason"] == "NoImageForTarget"
    assert p.action is None


def test_target_starting_waits_without_action() -> None:
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=TargetObservation(FULL, 0), images=IMAGES)
    assert p.status["phase"] == "Provisioning" and p.action is None
    assert cond(p.status, "Reconciling")["reason"] == "TargetStarting"


def test_partial_target_is_completed() -> None:
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=TargetObservation(frozenset({"Secret"}), 0), images=IMAGES)
    assert isinstance(p.action, planner.EnsureTarget)


def test_ready_target_runs_preflight_until_it_passes() -> None:
    ready = TargetObservation(FULL, 1)
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=ready, images=IMAGES)
    assert p.status["phase"] == "Checking" and p.action == planner.RunPreflight()
    after = planner.after_preflight(p.status, 1, NOW, [INFO], None)
    assert cond(after.status, "PreflightPassed")["status"] == "True"
    assert after.status["findings"] == [INFO.to_status()]
    assert after.status["preflight"] == {"checkedAt": "2026-03-01T12:00:00Z", "blockers": 0, "warnings": 0}
    again = planner.plan(SPEC, after.status, 1, obs(), NOW, target=ready, images=IMAGES, worker_images=WORKERS)
    assert again.action == planner.CreateCopyJob("dbmigrate-worker:17")
    assert again.status["phase"] == "Copying"
    # A new generation (spec edit) re-runs the check.
    assert planner.plan(SPEC, after.status, 2, obs(), NOW, target=ready, images=IMAGES).action == planner.RunPreflight()


def test_blockers_stall_and_are_rechecked() -> None:
    ready = TargetObservation(FULL, 1)
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=ready, images=IMAGES)
    after = planner.after_preflight(p.status, 1, NOW, [BLOCKER, LOGICAL_ONLY], None)
    st = after.status
    assert cond(st, "Stalled")["status"] == "True" and cond(st, "Ready")["reason"] == "PreflightBlocked"
    assert "extension_missing on db1.postgis" in st["message"]
    assert st["preflight"]["blockers"] == 1  # the logical-only one does not block a test
    assert [(e.type, e.reason) for e in after.events] == [("Warning", "PreflightBlocker")]
    # The next reconcile checks again (the user may have fixed it) and keeps the findings visible.
    nxt = planner.plan(SPEC, st, 1, obs(), NOW, target=ready, images=IMAGES)
    assert nxt.action == planner.RunPreflight() and "findings" not in nxt.status
    # Same blocker again: no duplicate Warning event.
    assert planner.after_preflight({**st, **nxt.status}, 1, NOW, [BLOCKER], None).events == []


def test_preflight_error_is_retried_not_stalled() -> None:
    after = planner.after_preflight({}, 1, NOW, None, "connection refused")
    assert cond(after.status, "PreflightPassed")["reason"] == "PreflightError"
    assert cond(after.status, "Reconciling")["status"] == "True"
    assert not any(c["type"] == "Stalled" for c in after.status["conditions"])
    assert "connection refused" in after.status["message"]


def test_replanning_same_world_changes_nothing() -> None:
    first = planner.plan(SPEC, {}, 1, obs(full=False), NOW)
    again = planner.plan(SPEC, first.status, 1, obs(full=False), NOW + timedelta(minutes=1))
    assert again.events == []
    assert planner.status_changes(first.status, again.status) == {}


def test_status_changes_only_lists_differences() -> None:
    assert planner.status_changes({"phase": "A", "x": 1}, {"phase": "A", "x": 2, "y": 3}) == {"x": 2, "y": 3}


# ---- copy, ready, expiry -----------------------------------------------------------------------

def _checked() -> dict[str, Any]:
    """Status of a Migration whose target is ready and whose pre-flight check passed."""
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=TargetObservation(FULL, 1), images=IMAGES)
    return {**p.status, **planner.after_preflight(p.status, 1, NOW, [], None, source_bytes=1000).status}


def _step(status: dict[str, Any], job: JobObservation | None, now: datetime = NOW, spec: dict[str, Any] | None = None,
          bytes_copied: int | None = None) -> planner.Plan:
    t = TargetObservation(FULL, 1, job=job, bytes_copied=bytes_copied)
    p = planner.plan(spec or SPEC, status, 1, obs(), now, target=t, images=IMAGES, worker_images=WORKERS,
                     name="m1", namespace="ns")
    return p


def test_copy_job_started_then_progress_reported() -> None:
    st = _checked()
    assert st["progress"] == {"percent": 0, "display": "0%", "bytesCopied": 0, "bytesTotal": 1000}
    assert _step(st, None).action == planner.CreateCopyJob("dbmigrate-worker:17")
    p = _step(st, JobObservation(active=1), bytes_copied=420)
    assert p.action is None and p.status["phase"] == "Copying"
    assert p.status["progress"] == {"percent": 42, "display": "42%", "bytesCopied": 420, "bytesTotal": 1000}
    assert "42%" in p.status["message"]
    # After a failed attempt the Job retries: the message says why the attempt failed
    # (redacted), so nobody waits on a copy that cannot start.
    refused = ("TooFewConnections: the source accepts 2 more connections (max_connections 10, 3 reserved, "
               "5 in use); the copy needs at least 4: raise max_connections on the source or end idle sessions")
    attempt = {"ok": False, "error": refused + " (ALTER ROLE a PASSWORD 'x')"}
    p = _step(st, JobObservation(active=1, last_attempt=attempt), bytes_copied=0)
    assert p.status["phase"] == "Copying" and p.action is None
    assert p.status["message"].endswith(f"; the last attempt failed, retrying: {refused} (ALTER ROLE a PASSWORD '***')")


def test_no_worker_image_fails_clearly() -> None:
    p = planner.plan(SPEC, _checked(), 1, obs(), NOW, target=TargetObservation(FULL, 1), images=IMAGES,
                     worker_images={})
    assert p.status["phase"] == "Failed" and "DBMIGRATE_WORKER_IMAGES" in p.status["message"]


def test_copy_success_makes_test_server_ready_until_ttl() -> None:
    st = _checked()
    p = _step(st, JobObservation(succeeded=True, result={"ok": True, "bytes": 5_000_000, "seconds": 12.5,
                                                          "databases": 3, "diff": "no differences"}))
    s2 = p.status
    assert s2["phase"] == "Ready" and p.action is None
    assert cond(s2, "Ready")["status"] == "True" and cond(s2, "CopyVerified")["status"] == "True"
    assert s2["testServer"] == {"host": "m1-target.ns.svc", "port": 5432,
                                "credentialsSecretName": "m1-target-credentials",
                                "expiresAt": "2026-03-02T12:00:00Z"}
    assert s2["progress"]["percent"] == 100
    assert s2["estimate"] == {"executeSeconds": 45.0, "writeDowntimeSeconds": 5.0}
    assert [e.reason for e in p.events if e.reason in ("CopyVerified", "TestServerReady")] == [
        "CopyVerified", "TestServerReady"]
    assert "m1-target.ns.svc:5432" in next(e.message for e in p.events if e.reason == "TestServerReady")
    # Later reconciles keep it Ready without re-reading anything, even if the source went away.
    merged = {**st, **s2}
    later = planner.plan(SPEC, merged, 1, obs(full=False), NOW + timedelta(hours=23), name="m1", namespace="ns")
    assert later.status["phase"] == "Ready" and later.events == [] and later.action is None
    # A longer ttl (allowed in test mode) moves the expiry.
    longer = {**SPEC, "test": {"ttl": "48h"}}
    assert planner.plan(longer, merged, 2, None, NOW, name="m1", namespace="ns").status["testServer"][
        "expiresAt"] == "2026-03-03T12:00:00Z"
    # At expiry the target is removed and the Migration ends in Expired, for good.
    gone = planner.plan(SPEC, merged, 1, None, NOW + timedelta(hours=24), name="m1", namespace="ns")
    assert gone.action == planner.ExpireTarget() and gone.status["phase"] == "Expired"
    assert gone.status["testServer"] is None
    assert cond(gone.status, "Ready")["reason"] == "Expired"
    final = planner.plan(SPEC, {**merged, **gone.status}, 1, obs(), NOW + timedelta(days=3), name="m1")
    assert final.action is None and final.status["phase"] == "Expired" and final.events == []


@pytest.mark.parametrize(("result", "reason", "text"), [
    ({"ok": False, "diff": "sales.orders: 10 rows on source, 9 on target"}, "VerificationFailed", "9 on target"),
    ({"ok": False, "error": "CommandFailed: pg_dump exited 1"}, "CopyFailed", "pg_dump exited 1"),
    (None, "CopyFailed", "BackoffLimitExceeded"),
])
def test_copy_failures_stall_with_the_reason(result: dict[str, Any] | None, reason: str, text: str) -> None:
    p = _step(_checked(), JobObservation(failed=True, failure="BackoffLimitExceeded", result=result))
    assert p.status["phase"] == "Failed" and cond(p.status, "Ready")["reason"] == reason
    assert text in p.status["message"]
    assert "to retry the copy, set annotation dbmigrate.dev/retry" in cond(p.status, "Reconciling")["message"]
    assert cond(p.status, "Stalled")["status"] == "True"


@pytest.mark.parametrize(("threshold", "downtime"), [
    (None, 168.0),         # walFreeLoadMinBytes never: the execute copy writes WAL (x1.4)
    (1001, 168.0),         # a source below it (_checked measured 1000 bytes): the same
    (1000, 130.0),         # at it: loaded without WAL, plus one restart of the new server
])
def test_dump_only_source_estimates_downtime_from_copy_time(threshold: int | None, downtime: float) -> None:
    st = _checked()
    st["findings"] = [BLOCKER.to_status() | {"appliesTo": "logical"}]
    p = planner.plan(SPEC, st, 1, obs(), NOW, target=TargetObservation(FULL, 1, job=JobObservation(
        succeeded=True, result={"ok": True, "seconds": 100, "bytes": 5_000_000})), images=IMAGES,
        worker_images=WORKERS, name="m1", namespace="ns", wal_free_min_bytes=threshold)
    assert p.status["estimate"] == {"executeSeconds": 150.0, "writeDowntimeSeconds": downtime}


def test_second_migration_of_a_source_is_blocked_until_the_first_ends() -> None:
    from dbmigrate.observed import PeerMigration

    first = PeerMigration("a", "pg", "Copying", "2026-03-01T10:00:00Z")
    p = planner.plan(SPEC, {}, 1, obs(), NOW, images=IMAGES, name="b", created="2026-03-01T11:00:00Z",
                     peers=[first, PeerMigration("b", "pg", "Pending", "2026-03-01T11:00:00Z")])
    assert p.status["phase"] == "Pending" and p.action is None
    assert cond(p.status, "Blocked")["status"] == "True"
    assert "Migration 'a' (phase Copying)" in cond(p.status, "Blocked")["message"]
    # The first one is not blocked by the second.
    assert planner.blocking_peer("a", first.created, "pg", [first, PeerMigration("b", "pg", "Pending",
                                                                                 "2026-03-01T11:00:00Z")]) is None
    # Other sources and finished Migrations do not block.
    assert planner.blocking_peer("b", "2026-03-01T11:00:00Z", "pg",
                                 [PeerMigration("x", "other", "Copying", "2026-01-01T00:00:00Z"),
                                  PeerMigration("y", "pg", "Expired", "2026-01-01T00:00:00Z")]) is None
    done = planner.plan(SPEC, p.status, 1, obs(), NOW, images=IMAGES, name="b", created="2026-03-01T11:00:00Z",
                        peers=[PeerMigration("a", "pg", "Completed", "2026-03-01T10:00:00Z")])
    assert not any(c["type"] == "Blocked" for c in done.status["conditions"])
    assert isinstance(done.action, planner.EnsureTarget)


SMOKE_SPEC = {**SPEC, "test": {"smokeTest": {"sql": {"configMapName": "checks"}}}}


def _verified(spec: dict[str, Any]) -> tuple[dict[str, Any], planner.Plan]:
    st = _checked()
    p = planner.plan(spec, st, 1, obs(), NOW, target=TargetObservation(FULL, 1, job=JobObservation(succeeded=True)),
                     images=IMAGES, worker_images=WORKERS, name="m1", namespace="ns")
    assert p.status["phase"] == "Ready"
    return {**st, **p.status}, p


def test_smoke_test_runs_after_ready_and_gates_the_guardrail() -> None:
    st, p = _verified(SMOKE_SPEC)
    assert p.action == planner.CreateSmokeJob()
    assert cond(st, "SmokeTestPassed")["status"] == "Unknown"
    assert "testPassedAt" not in st  # not a successful test until the smoke test passes
    running = planner.plan(SMOKE_SPEC, st, 1, obs(), NOW,
                           target=TargetObservation(FULL, 1, smoke_job=JobObservation(active=1)), name="m1")
    assert running.action is None and cond(running.status, "SmokeTestPassed")["reason"] == "SmokeTestRunning"
    ok = planner.plan(SMOKE_SPEC, st, 1, obs(), NOW,
                      target=TargetObservation(FULL, 1, smoke_job=JobObservation(succeeded=True)), name="m1")
    assert cond(ok.status, "SmokeTestPassed")["status"] == "True" and ok.status["testPassedAt"]
    assert [e.reason for e in ok.events] == ["SmokeTestPassed"]
    bad = planner.plan(SMOKE_SPEC, st, 1, obs(), NOW, target=TargetObservation(FULL, 1, smoke_job=JobObservation(
        failed=True, result={"output": 'psql:/smoke/smoke.sql:3: ERROR:  relation "orders" does not exist'})),
        name="m1")
    c = cond(bad.status, "SmokeTestPassed")
    assert c["status"] == "False" and 'relation "orders" does not exist' in c["message"]
    assert bad.status["phase"] == "Ready"  # the server is still there to investigate
    assert ("Warning", "SmokeTestFailed") in [(e.type, e.reason) for e in bad.events]
    assert "testPassedAt" not in bad.status
    assert c["message"].endswith("--overwrite) or delete Job m1-smoke)")
    # The user deleted the failed Job: the test runs again, on the same test server.
    failed = {**st, **bad.status}
    again = planner.plan(SMOKE_SPEC, failed, 1, obs(), NOW, target=TargetObservation(FULL, 1), name="m1")
    assert again.action == planner.CreateSmokeJob() and again.status["phase"] == "Ready"
    assert cond(again.status, "SmokeTestPassed")["message"] == "running your smoke test again"
    # A passed test whose Job is gone stays passed, and is not run again.
    passed = {**st, **ok.status}
    kept = planner.plan(SMOKE_SPEC, passed, 1, obs(), NOW, target=TargetObservation(FULL, 1), name="m1")
    assert kept.action is None and cond(kept.status, "SmokeTestPassed")["status"] == "True"


def test_a_smoke_test_that_cannot_start_says_why_at_once() -> None:
    """A ConfigMap name with a typo: the pod waits (CreateContainerConfigError) until the
    test's timeout; the condition says the kubelet's reason now, with one Warning event."""
    st, _ = _verified(SMOKE_SPEC)
    why = PodProblem("CreateContainerConfigError", 'pod m1-smoke-x, container smoke: CreateContainerConfigError: '
                     'configmap "checks" not found', "check the Secret or ConfigMap", needs_person=True)
    job = JobObservation(active=1, pod_problem=why)
    p = planner.plan(SMOKE_SPEC, st, 1, obs(), NOW, target=TargetObservation(FULL, 1, smoke_job=job), name="m1")
    c = cond(p.status, "SmokeTestPassed")
    assert c["status"] == "Unknown" and c["reason"] == "SmokeTestCannotStart"
    assert c["message"] == ('your smoke test cannot start: pod m1-smoke-x, container smoke: '
                            'CreateContainerConfigError: configmap "checks" not found; check spec.test.smokeTest')
    assert p.action is None and p.status["phase"] == "Ready" and "testPassedAt" not in p.status
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "SmokeTestCannotStart")]
    again = planner.plan(SMOKE_SPEC, {**st, **p.status}, 1, obs(), NOW,
                         target=TargetObservation(FULL, 1, smoke_job=job), name="m1")
    assert again.events == []  # once, not every reconcile
    # Waiting for a node is no person's job: still running.
    node = JobObservation(active=1, pod_problem=PodProblem("Unschedulable", "pod m1-smoke-x cannot be scheduled"))
    p = planner.plan(SMOKE_SPEC, st, 1, obs(), NOW, target=TargetObservation(FULL, 1, smoke_job=node), name="m1")
    assert cond(p.status, "SmokeTestPassed")["reason"] == "SmokeTestRunning"


def test_merge_patch_removes_keys_dropped_from_nested_objects() -> None:
    current = {"phase": "SwitchingOver", "switchover": {"startedAt": "t", "previousSelector": {"app": "pg"}},
               "replication": {"lagBytes": 5}}
    desired = {"phase": "Replicating", "switchover": {"previousSelector": {"app": "pg"}},
               "replication": {"lagBytes": 0, "initialSyncDone": True}}
    patch = planner.merge_patch(current, planner.status_changes(current, desired))
    assert patch == {"phase": "Replicating", "switchover": {"startedAt": None, "previousSelector": {"app": "pg"}},
                     "replication": {"lagBytes": 0, "initialSyncDone": True}}
    assert planner.merge_patch(current, {"switchover": None}) == {"switchover": None}


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (8_658_279, "8.7 MB"), (1_193_361_923, "1.2 GB"),
                                         (5 * 10**12, "5.0 TB"), (None, "0 B")])
def test_human_bytes(n: object, text: str) -> None:
    assert planner.human_bytes(n) == text


def test_a_target_pod_that_cannot_start_stalls_the_migration_once_then_recovers() -> None:
    from dbmigrate.podstatus import PodProblem

    pulling = PodProblem("ImagePullBackOff", 'pod m1-target-0, container postgres: ImagePullBackOff: nope',
                         "check spec.target.image", needs_person=True)
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=TargetObservation(FULL, 0, pod_problem=pulling), images=IMAGES)
    assert p.status["phase"] == "Provisioning" and p.action is None
    assert cond(p.status, "Stalled")["reason"] == "TargetNotReady"
    assert p.status["message"] == ("the target server (PostgreSQL 17) cannot start: pod m1-target-0, "
                                   "container postgres: ImagePullBackOff: nope")
    assert cond(p.status, "Reconciling")["message"] == "check spec.target.image"
    assert [e.reason for e in p.events if e.type == "Warning"] == ["TargetNotReady"]
    again = planner.plan(SPEC, p.status, 1, obs(), NOW, target=TargetObservation(FULL, 0, pod_problem=pulling),
                         images=IMAGES)
    assert "TargetNotReady" not in [e.reason for e in again.events], "one event, not one per reconcile"
    # Someone fixed the image: the pod starts, the Migration goes on.
    fixed = planner.plan(SPEC, again.status, 1, obs(), NOW, target=TargetObservation(FULL, 1), images=IMAGES)
    assert fixed.action == planner.RunPreflight()
    assert not any(c["type"] == "Stalled" for c in fixed.status["conditions"])


def test_a_target_pod_waiting_for_capacity_says_so_while_it_waits() -> None:
    from dbmigrate.podstatus import PodProblem

    full = PodProblem("Unschedulable", "pod m1-target-0 cannot be scheduled: 0/1 nodes are available")
    p = planner.plan(SPEC, {}, 1, obs(), NOW, target=TargetObservation(FULL, 0, pod_problem=full), images=IMAGES)
    assert cond(p.status, "Reconciling")["reason"] == "TargetStarting"
    assert p.status["message"].endswith("to become ready: pod m1-target-0 cannot be scheduled: 0/1 nodes are available")
    assert not any(c["type"] == "Stalled" for c in p.status["conditions"])


def test_a_test_copy_job_that_cannot_start_stalls_and_recovers() -> None:
    from dbmigrate.podstatus import PodProblem

    pull = PodProblem("ErrImagePull", "pod m1-copy-x, container copy: ErrImagePull: nope", "check the worker image",
                      needs_person=True)
    p = _step(_checked(), JobObservation(active=1, pod_problem=pull))
    assert p.status["phase"] == "Copying" and cond(p.status, "Stalled")["reason"] == "JobCannotStart"
    assert p.status["message"] == "the copy Job m1-copy cannot start: pod m1-copy-x, container copy: ErrImagePull: nope"
    running = _step({**_checked(), **p.status}, JobObservation(active=1), bytes_copied=500)
    assert running.status["message"] == "copying every database into the target server (50%)"
    assert not any(c["type"] == "Stalled" for c in running.status["conditions"])
