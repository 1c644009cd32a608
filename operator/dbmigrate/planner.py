"""Pure decisions: (spec, current status, what was observed, now) -> the next status and events.

No I/O here: handlers.py gathers the observation through kube.py, asks `plan()`, then writes
the status it returns (only when it differs) and posts the events.

Steps of a reconcile, in order (each later phase plugs in after the previous one holds):
  1. Parse the spec (the apiserver validated it; a parse error is still reported, not raised).
  2. Resolve the source: StatefulSet, Service and credentials Secret exist, the Secret has the
     keys, the database container and its major version are known, the Service selects the
     source pods on the right port, and the target is newer than the source.
  3. Provisioning: create the target server's children (resources.py), wait until it is ready.
  4. Checking: the engine's pre-flight check against source and target; blockers stall the
     Migration (re-checked on every reconcile), findings go to status.findings.
  5. Copying and later phases are not in this build: the Migration says so in its Ready
     condition and waits — it never claims work it does not do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from . import conditions as cond
from . import resources
from .api import SUPPORTED_SOURCES, MigrationSpec, SpecError, TestSpec, format_duration, image_major, parse_spec
from .conditions import Condition
from .engines.base import Finding, Severity
from .observed import (
    ContainerInfo,
    ExecuteObservation,
    JobObservation,
    PeerMigration,
    SourceObservation,
    TargetObservation,
)

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Problem:
    """Something the user must fix; reason is a stable CamelCase code."""

    reason: str
    message: str


@dataclass(frozen=True)
class ResolvedSource:
    major: int
    image: str
    container: str


def pick_container(spec: MigrationSpec, containers: tuple[ContainerInfo, ...]) -> ContainerInfo | None:
    if spec.source.container_name:
        return next((c for c in containers if c.name == spec.source.container_name), None)
    return next((c for c in containers if c.name == "postgres"), containers[0] if containers else None)


def resolve_source(spec: MigrationSpec, obs: SourceObservation) -> tuple[ResolvedSource | None, list[Problem]]:
    """Check the source objects; return every problem at once so one edit can fix them all."""
    src, ns = spec.source, obs.namespace
    problems: list[Problem] = []
    resolved: ResolvedSource | None = None

    sts = obs.statefulset
    if sts is None:
        problems.append(Problem(
            "SourceStatefulSetNotFound",
            f"StatefulSet {src.stateful_set_name!r} not found in namespace {ns!r}: set "
            f"spec.source.statefulSetName to the StatefulSet running your database "
            f"(kubectl get statefulsets -n {ns}).",
        ))
    else:
        container = pick_container(spec, sts.containers)
        if container is None:
            names = ", ".join(c.name for c in sts.containers) or "none"
            problems.append(Problem(
                "SourceContainerNotFound",
                f"StatefulSet {sts.name!r} has no container {src.container_name!r} (containers: {names}): "
                f"set spec.source.containerName to the container that runs the database.",
            ))
        else:
            major = src.version if src.version is not None else image_major(container.image)
            if major is None:
                problems.append(Problem(
                    "SourceVersionUnknown",
                    f"cannot tell the PostgreSQL major version from image {container.image!r} of container "
                    f"{container.name!r}: set spec.source.version (e.g. \"15\").",
                ))
            elif major not in SUPPORTED_SOURCES:
                problems.append(Problem(
                    "SourceVersionUnsupported",
                    f"the source runs PostgreSQL {major} (image {container.image!r}); supported source "
                    f"versions are {', '.join(map(str, SUPPORTED_SOURCES))}.",
                ))
            else:
                resolved = ResolvedSource(major=major, image=container.image, container=container.name)

    svc = obs.service
    if svc is None:
        problems.append(Problem(
            "SourceServiceNotFound",
            f"Service {src.service_name!r} not found in namespace {ns!r}: set spec.source.serviceName to "
            f"the Service your applications connect to (kubectl get services -n {ns}).",
        ))
    else:
        if src.port not in svc.ports:
            ports = ", ".join(map(str, svc.ports)) or "none"
            problems.append(Problem(
                "SourceServicePortMismatch",
                f"Service {svc.name!r} has no port {src.port} (ports: {ports}): set spec.source.port.",
            ))
        if sts is not None:
            if not svc.selector:
                problems.append(Problem(
                    "SourceServiceWithoutSelector",
                    f"Service {svc.name!r} has no selector; the operator must repoint it on execute, so it "
                    f"has to select the pods of StatefulSet {sts.name!r} by label.",
                ))
            elif any(sts.pod_labels.get(k) != v for k, v in svc.selector.items()):
                problems.append(Problem(
                    "SourceServiceSelectorMismatch",
                    f"Service {svc.name!r} (selector {_fmt_labels(svc.selector)}) does not select the pods of "
                    f"StatefulSet {sts.name!r} (labels {_fmt_labels(sts.pod_labels)}): point "
                    f"spec.source.serviceName at the Service in front of this StatefulSet.",
                ))

    sec = obs.secret
    if sec is None:
        problems.append(Problem(
            "CredentialsSecretNotFound",
            f"Secret {src.credentials_secret_name!r} not found in namespace {ns!r}: create it with the keys "
            f"{src.username_key!r} and {src.password_key!r} (a superuser login of the source), or set "
            f"spec.source.credentialsSecretName.",
        ))
    else:
        missing = [k for k in (src.username_key, src.password_key) if k not in sec.keys]
        if missing:
            have = ", ".join(sorted(sec.keys)) or "none"
            problems.append(Problem(
                "CredentialsSecretIncomplete",
                f"Secret {sec.name!r} lacks the key(s) {', '.join(map(repr, missing))} (it has: {have}): add "
                f"them, or set spec.source.usernameKey / spec.source.passwordKey to the keys it uses.",
            ))

    if resolved is not None and spec.target.version <= resolved.major:
        problems.append(Problem(
            "TargetNotNewer",
            f"spec.target.version {spec.target.version} is not newer than the source's PostgreSQL "
            f"{resolved.major}; a Migration moves to a newer major version (spec.target is immutable: "
            f"create a new Migration).",
        ))
    return (resolved if not problems else None), problems


def _fmt_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


# Problems no edit of the source objects can fix (the spec field is immutable).
_PERMANENT = {"TargetNotNewer", "SourceVersionUnsupported", "InvalidSpec", "NoImageForTarget"}


@dataclass(frozen=True)
class EnsureTarget:
    """Create whichever target children are missing (never update existing ones)."""

    image: str


@dataclass(frozen=True)
class RunPreflight:
    """Connect to source and target and run the engine's pre-flight check."""


@dataclass(frozen=True)
class CreateCopyJob:
    """Start the Job that copies and verifies (created once; a deleted Job is re-created)."""

    worker_image: str


@dataclass(frozen=True)
class ExpireTarget:
    """The test server's TTL ran out: delete the target's children (never the source)."""


Action = EnsureTarget | RunPreflight | CreateCopyJob | ExpireTarget


@dataclass
class Plan:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    # One of this module's actions, or of executeplan's: handlers dispatch on the type.
    action: object | None = None


class _Builder:
    """Accumulates the next status from the current one (conditions keep their history)."""

    def __init__(self, status: dict[str, Any], generation: int, now: datetime) -> None:
        self.old = status
        self.conds: list[Condition] = list(status.get("conditions") or [])
        self.generation, self.now = generation, now
        self.status: dict[str, Any] = {"observedGeneration": generation}
        self.target_status: dict[str, Any] = {}
        self.name = ""
        self.target_version = ""
        self.pending_events: list[Event] = []

    def set(self, t: str, s: cond.Status, reason: str, message: str) -> None:
        self.conds = cond.set_condition(self.conds, t, s, reason, message, self.generation, self.now)

    def progressing(self, phase: str, reason: str, message: str) -> None:
        """Work is under way: Ready False, Reconciling True, not Stalled (kstatus: InProgress)."""
        self.status["phase"] = phase
        self.set(cond.READY, "False", reason, message)
        self.set(cond.RECONCILING, "True", reason, message)
        self.conds = cond.remove_condition(self.conds, cond.STALLED)
        self.status["message"] = message

    def stalled(self, phase: str, reason: str, message: str, hint: str) -> None:
        """Nothing moves until a human acts: Ready False, Stalled True (kstatus: Failed)."""
        self.status["phase"] = phase
        self.set(cond.READY, "False", reason, message)
        self.set(cond.STALLED, "True", reason, message)
        self.set(cond.RECONCILING, "False", reason, hint)
        self.status["message"] = message

    def plan(self, action: object | None = None, extra: list[Event] | None = None) -> Plan:
        self.status["conditions"] = self.conds
        events = _events(self.old.get("phase"), self.status["phase"],
                         list(self.old.get("conditions") or []), self.conds) + self.pending_events + (extra or [])
        return Plan(status=self.status, events=events, action=action)


def plan(
    body_spec: dict[str, Any],
    status: dict[str, Any],
    generation: int,
    observation: SourceObservation | None,
    now: datetime,
    target: TargetObservation | None = None,
    images: Mapping[int, str] | None = None,
    worker_images: Mapping[int, str] | None = None,
    name: str = "migration",
    namespace: str = "default",
    uid: str = "",
    execute: ExecuteObservation | None = None,
    peers: list[PeerMigration] | None = None,
    created: str = "",
    wal_free_min_bytes: int | None = None,
    retry_request: str | None = None,
) -> Plan:
    """The next status, events and action; `retry_request` is the value of the Migration's
    retry annotation (retry.py), if any."""
    from . import retry  # retry builds on this module

    result = _plan(body_spec, status, generation, observation, now, target, images, worker_images, name,
                   namespace, uid, execute, peers, created, wal_free_min_bytes)
    return retry.apply(result, retry_request, status, name, str(body_spec.get("mode", "test")), target, execute,
                       now, str((body_spec.get("source") or {}).get("statefulSetName", "")), peers)


def _plan(
    body_spec: dict[str, Any],
    status: dict[str, Any],
    generation: int,
    observation: SourceObservation | None,
    now: datetime,
    target: TargetObservation | None,
    images: Mapping[int, str] | None,
    worker_images: Mapping[int, str] | None,
    name: str,
    namespace: str,
    uid: str,
    execute: ExecuteObservation | None,
    peers: list[PeerMigration] | None,
    created: str,
    wal_free_min_bytes: int | None,
) -> Plan:
    from . import executeplan as xp  # executeplan builds on this module

    b = _Builder(status, generation, now)
    b.name = name
    b.target_version = str((body_spec.get("target") or {}).get("version", ""))
    b.target_status = _target_status(name, namespace)
    mode = body_spec.get("mode", "test")
    if mode == "execute":
        if xp.needs_reset(status):
            b.status.update({"testServer": None, "progress": None, "phase": "Provisioning",
                             "target": {**b.target_status, "provisionedFor": "execute"}})
            # The test's smoke result goes too: its test server goes, and a failed one's advice
            # (delete its Job to run it again) would no longer hold; testPassedAt keeps the pass.
            b.conds = [c for c in b.conds
                       if c["type"] not in (cond.COPY_VERIFIED, cond.PREFLIGHT, cond.SMOKE_TEST)]
            b.progressing("Provisioning", "RemovingTestServer",
                          "mode changed to execute: removing the test server; execute provisions its own")
            return b.plan(xp.ResetTestServer())
        if (status.get("switchover") or {}).get("pointOfNoReturnAt") or xp.repointed(status, name, execute):
            # Past the point of no return nothing is re-checked: the source Service already
            # points at the new server and the old one is stopped. Only forward.
            spec_x = parse_spec(body_spec)
            return xp.plan_execute(b, spec_x, target or TargetObservation(), execute or ExecuteObservation(),
                                   status, (worker_images or {}).get(spec_x.target.version), uid,
                                   wal_free_min_bytes)
    if status.get("phase") == "Expired":
        # Terminal: the test server is gone; a new test needs a new Migration.
        b.status["phase"] = "Expired"
        return b.plan()
    if mode == "test" and cond.is_true(b.conds, cond.COPY_VERIFIED):
        return _ready(b, _test_spec(body_spec), now, (target or TargetObservation()).smoke_job)
    rival = blocking_peer(name, created, str((body_spec.get("source") or {}).get("statefulSetName", "")),
                          peers or [])
    if rival is not None:
        msg = (f"Migration {rival.name!r} (phase {rival.phase}) is already working on StatefulSet "
               f"{rival.source!r}; this one waits until it ends (or delete it)")
        b.set(cond.BLOCKED, "True", "SourceBusy", msg)
        b.progressing("Pending", "Blocked", msg)
        return b.plan()
    b.conds = cond.remove_condition(b.conds, cond.BLOCKED)
    if mode == "execute":
        missing_test = test_required(body_spec, status, name, peers or [], now)
        if missing_test:
            b.set(cond.TEST_REQUIRED, "True", "NoRecentSuccessfulTest", missing_test)
            b.progressing("Pending", "TestRequired", missing_test)
            return b.plan()
        b.conds = cond.remove_condition(b.conds, cond.TEST_REQUIRED)
    try:
        spec = parse_spec(body_spec)
        problems: list[Problem] = []
        resolved: ResolvedSource | None = None
        if observation is not None:
            resolved, problems = resolve_source(spec, observation)
    except SpecError as e:
        problems, resolved = [Problem("InvalidSpec", str(e))], None

    if not problems and resolved is not None:
        image = spec.target.image or (images or {}).get(spec.target.version)
        if image is None:
            problems = [Problem("NoImageForTarget",
                                f"the operator has no image for PostgreSQL {spec.target.version}: set "
                                f"spec.target.image, or add it to the operator's version->image map")]

    if problems:
        summary = " ".join(p.message for p in problems)
        permanent = any(p.reason in _PERMANENT for p in problems)
        first = problems[0].reason
        b.set(cond.SOURCE_RESOLVED, "False", first, summary)
        b.stalled("Failed" if permanent else "Pending", first, summary,
                  "nothing more will happen: create a new Migration" if permanent
                  else "waiting for the spec or the source objects to be fixed")
        return b.plan()

    assert resolved is not None and image is not None
    b.status["sourceVersion"] = str(resolved.major)
    b.status["sourceImage"] = resolved.image
    b.set(cond.SOURCE_RESOLVED, "True", "SourceResolved",
          f"source resolved: PostgreSQL {resolved.major} (image {resolved.image}, container "
          f"{resolved.container}) -> {spec.target.version}")

    # Provisioning: the target server first, because the check needs what the target offers
    # (its extensions, ICU, locales). It is a new, separate server: the source is not touched.
    t = target or TargetObservation()
    b.status["target"] = {**b.target_status, "image": image, "provisionedFor": spec.mode}
    if not t.complete:
        b.progressing("Provisioning", "CreatingTarget",
                      f"creating the target server (PostgreSQL {spec.target.version}, image {image})")
        return b.plan(EnsureTarget(image))
    # A restart of the new server while writes are stopped (strategy dump) has a time bound:
    # executeplan.py waits for it, not this.
    restarting = bool((status.get("switchover") or {}).get("targetRestartedAt"))
    if t.ready_replicas < 1 and not restarting:
        return target_not_ready(b, t, f"the target server (PostgreSQL {spec.target.version})")

    # Checking: run it until it passes for this generation; a blocked check is re-run on every
    # reconcile, so fixing the source is enough to proceed.
    pf = cond.find(b.conds, cond.PREFLIGHT)
    if pf is None or pf["status"] != "True" or pf.get("observedGeneration") != generation:
        if pf is None or pf["status"] != "False":
            b.progressing("Checking", "RunningPreflight",
                          "running the pre-flight check against the source and the target server")
        else:
            b.status["phase"] = "Checking"
        return b.plan(RunPreflight())

    worker_image = (worker_images or {}).get(spec.target.version)
    if spec.mode == "execute":
        return xp.plan_execute(b, spec, t, execute or ExecuteObservation(), status, worker_image, uid,
                               wal_free_min_bytes)
    return _copy(b, spec, t, worker_image, status, wal_free_min_bytes)


def _copy(b: _Builder, spec: MigrationSpec, t: TargetObservation, worker_image: str | None,
          status: dict[str, Any], wal_free_min_bytes: int | None) -> Plan:
    """Copying: one Job copies every database and verifies the copy (engine jobmain)."""
    job = t.job
    if job is None:
        if worker_image is None:
            msg = (f"the operator has no worker image for PostgreSQL {spec.target.version}: add it to the "
                   f"operator's worker image map (DBMIGRATE_WORKER_IMAGES)")
            b.stalled("Failed", "NoWorkerImage", msg, "fix the operator's configuration")
            return b.plan()
        b.progressing("Copying", "StartingCopy", "starting the copy Job")
        return b.plan(CreateCopyJob(worker_image))
    total = int((status.get("progress") or {}).get("bytesTotal") or 0)
    if job.succeeded:  # the Job exits 0 only when verification found no difference
        r = job.result or {}
        msg = (f"copied and verified {r.get('databases', '?')} database(s), {human_bytes(r.get('bytes'))} of "
               f"table data in {r.get('seconds', '?')} s")
        b.set(cond.COPY_VERIFIED, "True", "CopyVerified", msg)
        done = total or int(str(r.get("bytes") or 0))
        b.status["progress"] = _progress(done, done)
        b.status["estimate"] = _estimate(r, status, done, wal_free_min_bytes)
        return _ready(b, spec.test, b.now, t.smoke_job, extra=[Event("Normal", "CopyVerified", msg)])
    if job.failed:
        r = job.result or {}
        if r.get("diff"):
            reason, msg = "VerificationFailed", f"the copy differs from the source: {r['diff']}"
        else:
            reason = "CopyFailed"
            msg = f"the copy Job failed: {job.error or 'see the Job pod logs'}"
        b.set(cond.COPY_VERIFIED, "False", reason, msg)
        from .retry import how
        b.stalled("Failed", reason, msg,
                  f"the source is untouched; to retry the copy, {how(b.name, b.target_status['copyJobName'])}")
        return b.plan()
    stuck = job_waiting(b, job, f"the copy Job {b.target_status['copyJobName']}")
    if stuck is not None:
        return stuck
    b.status["progress"] = copy_progress(status, t)
    b.progressing("Copying", "Copying", f"copying every database into the target server "
                  f"({b.status['progress']['display']}){waiting_note(job)}")
    return b.plan()


def copy_progress(status: dict[str, Any], t: TargetObservation) -> dict[str, Any]:
    """A running copy Job's progress: the bytes now in the target's databases (measured each
    reconcile; the last value when not), against the source's size measured by the check."""
    old = status.get("progress") or {}
    copied = t.bytes_copied if t.bytes_copied is not None else int(old.get("bytesCopied") or 0)
    return _progress(copied, int(old.get("bytesTotal") or 0))


def _target_status(name: str, namespace: str) -> dict[str, Any]:
    n = resources.names(name)
    return {"statefulSetName": n["statefulset"], "serviceName": n["service"],
            "credentialsSecretName": n["secret"], "copyJobName": n["copyjob"],
            "host": resources.service_host(n["service"], namespace), "port": resources.PG_PORT}


def human_bytes(v: object) -> str:
    """1234567 -> '1.2 MB' (decimal units, as storage is sold); a small copy is not '0 MB'."""
    n = float(str(v or 0))
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _progress(copied: int, total: int) -> dict[str, Any]:
    pct = 0 if total <= 0 else min(99, int(100 * copied / total)) if copied < total else 100
    return {"percent": pct, "display": f"{pct}%", "bytesCopied": copied, "bytesTotal": total}


# The test copy loads its server without WAL. A dump execute below walFreeLoadMinBytes loads one
# that writes WAL: measured 1.38x as long (bench/copy_bench.py, the wal_level=logical row).
WAL_LOAD_FACTOR = 1.4
# A dump execute at or above it restarts the new server inside the interruption (2-7 s measured).
RESTART_ALLOWANCE_SECONDS = 10.0


def _estimate(result: dict[str, object], status: dict[str, Any], copied_bytes: int,
              wal_free_min_bytes: int | None) -> dict[str, float]:
    """What execute will likely cost, from what this test measured. A dump execute fences writes
    for the whole copy; a logical one only for the final catch-up (seconds)."""
    seconds = float(str(result.get("seconds") or 0))
    logical_ok = not any(f.get("severity") == "blocker" for f in status.get("findings") or [])
    if logical_ok:
        down = 5.0
    elif wal_free_min_bytes is not None and copied_bytes >= wal_free_min_bytes:
        down = seconds * 1.2 + RESTART_ALLOWANCE_SECONDS
    else:
        down = seconds * 1.2 * WAL_LOAD_FACTOR
    return {"executeSeconds": round(seconds * 1.2 + 30, 1), "writeDowntimeSeconds": round(down, 1)}


@dataclass(frozen=True)
class CreateSmokeJob:
    """Run the user's smoke test against the ready test server."""


def _ready(b: _Builder, test: TestSpec, now: datetime, smoke_job: JobObservation | None,
           extra: list[Event] | None = None) -> Plan:
    """Ready: publish the test server, run the smoke test if any; at expiry remove the server."""
    t = b.target_status
    verified = cond.find(b.conds, cond.COPY_VERIFIED)
    since = _parse_time(verified["lastTransitionTime"]) if verified else now
    expires = since + test.ttl
    if now >= expires:
        b.conds = cond.remove_condition(b.conds, cond.STALLED)
        b.status["phase"] = "Expired"
        msg = f"the test server expired at {cond.rfc3339(expires)} and was removed"
        b.set(cond.READY, "False", "Expired", msg)
        b.set(cond.RECONCILING, "False", "Expired", msg)
        b.status["message"] = msg
        b.status["testServer"] = None
        return b.plan(ExpireTarget(), extra)
    b.status["phase"] = "Ready"
    b.conds = cond.remove_condition(b.conds, cond.STALLED)
    msg = (f"test server ready at {t['host']}:{t['port']} (credentials in Secret "
           f"{t['credentialsSecretName']}), until {cond.rfc3339(expires)}")
    b.set(cond.READY, "True", "TestServerReady", msg)
    b.set(cond.RECONCILING, "False", "TestServerReady", msg)
    b.status["message"] = msg
    b.status["testServer"] = {"host": t["host"], "port": t["port"],
                              "credentialsSecretName": t["credentialsSecretName"],
                              "expiresAt": cond.rfc3339(expires)}
    events = list(extra or [])
    if b.old.get("phase") != "Ready":
        events.append(Event("Normal", "TestServerReady", msg))
    action: object | None = None
    passed = True
    if test.smoke is not None:
        passed, action = _smoke(b, smoke_job, events)
    if passed:
        # What the requireSuccessfulTest guardrail of a later execute looks for.
        b.status["testPassedAt"] = b.old.get("testPassedAt") or cond.rfc3339(now)
        b.status["testTargetVersion"] = b.old.get("testTargetVersion") or b.target_version
    return b.plan(action, events)


def target_not_ready(b: _Builder, t: TargetObservation, what: str, reason: str = "TargetStarting") -> Plan:
    """Wait for the new server's pod, saying why it is not ready when its status tells; stalled
    (a person must act, one Warning event) when no retry will fix it (podstatus.py)."""
    why = t.pod_problem
    if why is None or not why.needs_person:
        b.progressing("Provisioning", reason, f"waiting for {what} to become ready"
                      + (f": {why.message}" if why else ""))
        return b.plan()
    return stall_once(b, "Provisioning", "TargetNotReady", f"{what} cannot start: {why.message}", why.hint)


def stall_once(b: _Builder, phase: str, reason: str, msg: str, hint: str) -> Plan:
    """Stalled (a person must act) with a Warning event the first time, not every reconcile."""
    old = cond.find(b.conds, cond.STALLED)
    first = old is None or old.get("reason") != reason
    b.stalled(phase, reason, msg, hint)
    return b.plan(extra=[Event("Warning", reason, msg)] if first else [])


def job_waiting(b: _Builder, job: JobObservation, what: str, phase: str = "Copying") -> Plan | None:
    """A Job whose pod cannot start (an image the nodes cannot pull, a missing input): stalled,
    since it stays active for ever; None otherwise (the caller reports its progress)."""
    why = job.pod_problem
    if why is None or not why.needs_person:
        return None
    return stall_once(b, phase, "JobCannotStart", f"{what} cannot start: {why.message}", why.hint)


def waiting_note(job: JobObservation | None) -> str:
    """What a running Job's pod waits for, when it says (e.g. capacity), and why its last
    attempt failed while the Job retries, for the message."""
    if job is None:
        return ""
    notes = [job.pod_problem.message] if job.pod_problem is not None else []
    if job.retrying:
        notes.append(f"the last attempt failed, retrying: {job.retrying}")
    return "".join(f"; {n}" for n in notes)


def _smoke(b: _Builder, job: JobObservation | None, events: list[Event]) -> tuple[bool, object | None]:
    """(passed, action): the SmokeTestPassed condition from the smoke Job's outcome."""
    old = cond.find(b.conds, cond.SMOKE_TEST)
    if job is None:
        if old is not None and old["status"] == "True":
            return True, None  # passed earlier (its Job may have been deleted since)
        # No Job yet, or the failed one was deleted: the way to run the test again once its
        # script, ConfigMap or image is fixed, without copying again.
        again = old is not None and old["status"] == "False"
        b.set(cond.SMOKE_TEST, "Unknown", "SmokeTestStarting",
              "running your smoke test again" if again else "starting your smoke test")
        return False, CreateSmokeJob()
    if job.succeeded:
        b.set(cond.SMOKE_TEST, "True", "SmokeTestPassed", "your smoke test passed against the test server")
        if old is None or old["status"] != "True":
            events.append(Event("Normal", "SmokeTestPassed", "your smoke test passed against the test server"))
        return True, None
    if job.failed:
        r = job.result or {}
        output = str(r.get("output") or r.get("error") or job.failure or "no output")[-600:]
        msg = f"your smoke test failed: {output}"
        from .retry import how
        b.set(cond.SMOKE_TEST, "False", "SmokeTestFailed",
              f"{msg} (to run it again: fix it, then {how(b.name, resources.names(b.name)['smokejob'])})")
        if old is None or old["status"] != "False":
            events.append(Event("Warning", "SmokeTestFailed", msg))
        return False, None
    why = job.pod_problem
    if why is not None and why.needs_person:
        # E.g. your template's image cannot be pulled, or a Secret it refers to is missing
        # (CreateContainerConfigError): the pod would wait until the test's timeout, and then
        # say only that the deadline passed. (A missing ConfigMap of the SQL mode fails at once.)
        msg = f"your smoke test cannot start: {why.message}"
        b.set(cond.SMOKE_TEST, "Unknown", "SmokeTestCannotStart", f"{msg}; check spec.test.smokeTest")
        if old is None or old.get("reason") != "SmokeTestCannotStart":
            events.append(Event("Warning", "SmokeTestCannotStart", msg))
        return False, None
    b.set(cond.SMOKE_TEST, "Unknown", "SmokeTestRunning", "your smoke test is running")
    return False, None


def _test_spec(body_spec: dict[str, Any]) -> TestSpec:
    try:
        return parse_spec(body_spec).test
    except SpecError:
        return TestSpec()


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def after_preflight(status: dict[str, Any], generation: int, now: datetime,
                    findings: list[Finding] | None, error: str | None, source_bytes: int | None = None) -> Plan:
    """Status after a pre-flight run: findings, the Preflight condition, Stalled on blockers."""
    b = _Builder(status, generation, now)
    b.status["phase"] = "Checking"
    extra: list[Event] = []
    if error is not None:
        b.set(cond.PREFLIGHT, "False", "PreflightError", error)
        b.progressing("Checking", "PreflightError", f"the pre-flight check could not run: {error}; retrying")
        return b.plan()
    fs = findings or []
    blockers = [f for f in fs if f.severity == Severity.BLOCKER and f.applies_to == "all"]
    warnings = [f for f in fs if f.severity == Severity.WARNING]
    b.status["findings"] = [f.to_status() for f in fs]
    b.status["preflight"] = {"checkedAt": cond.rfc3339(now), "blockers": len(blockers),
                             "warnings": len(warnings)}
    if source_bytes is not None:
        b.status["progress"] = _progress(0, source_bytes)
    if blockers:
        msg = (f"{len(blockers)} blocker(s): " + "; ".join(f"{f.code} on {f.object}" for f in blockers[:5])
               + ". See status.findings for hints; the check re-runs until they are fixed.")
        b.set(cond.PREFLIGHT, "False", "PreflightBlocked", msg)
        b.stalled("Checking", "PreflightBlocked", msg, "fix the blockers in the source database")
        old_codes = {(f.get("code"), f.get("object")) for f in status.get("findings") or []}
        extra = [Event("Warning", "PreflightBlocker", f"{f.code} on {f.object}: {f.message}")
                 for f in blockers if (f.code, f.object) not in old_codes]
    else:
        msg = f"pre-flight check passed: {len(warnings)} warning(s), {len(fs) - len(warnings)} info"
        b.set(cond.PREFLIGHT, "True", "PreflightPassed", msg)
        b.progressing("Checking", "PreflightPassed", msg)
    return b.plan(extra=extra)


TERMINAL_PHASES = ("Expired", "Failed", "Completed")


def test_required(body_spec: dict[str, Any], status: dict[str, Any], name: str, peers: list[PeerMigration],
                  now: datetime) -> str | None:
    """The requireSuccessfulTest guardrail: None when execute may go on, else why it waits."""
    try:
        spec = parse_spec(body_spec)
    except SpecError:
        return None  # reported elsewhere
    if not spec.execute.require_successful_test or (status.get("target") or {}).get("provisionedFor") == "execute":
        return None  # off, or this execute already started: a guardrail never stops a running move
    version = str(spec.target.version)
    passed = [status.get("testPassedAt")] if str(status.get("testTargetVersion")) == version else []
    passed += [p.test_passed_at for p in peers
               if p.name != name and p.source == spec.source.stateful_set_name and p.target_version == version]
    recent = [t for t in passed if t and now - _parse_time(t) <= spec.execute.successful_test_max_age]
    if recent:
        return None
    return (f"spec.execute.requireSuccessfulTest: no test of StatefulSet {spec.source.stateful_set_name!r} to "
            f"PostgreSQL {version} reached Ready in the last {format_duration(spec.execute.successful_test_max_age)}; "
            f"run a Migration with mode test first (this one may be switched from test to execute)")


def active_peers(name: str, source: str, peers: list[PeerMigration]) -> list[PeerMigration]:
    """The other unfinished Migrations of the same source StatefulSet."""
    return [p for p in peers if p.name != name and p.source == source and p.phase not in TERMINAL_PHASES]


def blocking_peer(name: str, created: str, source: str, peers: list[PeerMigration]) -> PeerMigration | None:
    """The earliest other active Migration of the same source, if it came before this one."""
    rivals = sorted(active_peers(name, source, peers), key=lambda p: (p.created, p.name))
    if rivals and (rivals[0].created, rivals[0].name) < (created, name):
        return rivals[0]
    return None


def after_error(status: dict[str, Any], generation: int, now: datetime, what: str, error: str) -> Plan:
    """An action failed (a server unreachable for a moment, say): say so and retry next time."""
    b = _Builder(status, generation, now)
    b.status["phase"] = status.get("phase") or "Pending"
    msg = f"{what} failed: {error}; retrying"
    b.set(cond.RECONCILING, "True", "Retrying", msg)
    b.status["message"] = msg
    return b.plan()


def _events(old_phase: str | None, phase: str, old: list[Condition], new: list[Condition]) -> list[Event]:
    """One event per phase transition, one per change of SourceResolved (Warning when False)."""
    events: list[Event] = []
    o, n = cond.find(old, cond.SOURCE_RESOLVED), cond.find(new, cond.SOURCE_RESOLVED)
    if n is not None and (o is None or (o["status"], o["reason"], o["message"]) != (
            n["status"], n["reason"], n["message"])):
        events.append(Event("Normal" if n["status"] == "True" else "Warning", n["reason"], n["message"]))
    if old_phase != phase:
        events.append(Event("Warning" if phase == "Failed" else "Normal", f"Phase{phase}",
                            f"phase {old_phase or '(new)'} -> {phase}"))
    return events


def status_changes(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The part of `desired` that differs from `current` (empty: skip the write)."""
    return {k: v for k, v in desired.items() if current.get(k) != v}


def merge_patch(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` as a JSON merge patch (RFC 7386) of `current`: a merge patch merges nested
    objects, so a key dropped from a nested object must be sent as null to be removed (else
    e.g. a cleared switchover.startedAt would survive in the stored status)."""
    out: dict[str, Any] = {}
    for k, v in changes.items():
        old = current.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            out[k] = {**{ok: None for ok in old if ok not in v}, **merge_patch(old, v)}
        else:
            out[k] = v
    return out
