"""Pure decisions: (spec, current status, what was observed, now) -> the next status and events.

No I/O here: handlers.py gathers the observation through kube.py, asks `plan()`, then writes
the status it returns (only when it differs) and posts the events.

Steps of a reconcile, in order (each later phase plugs in after the previous one holds):
  1. Parse the spec (the apiserver validated it; a parse error is still reported, not raised).
  2. Resolve the source: StatefulSet, Service and credentials Secret exist, the Secret has the
     keys, the database container and its major version are known, the Service selects the
     source pods on the right port, and the target is newer than the source.
  3. Checking: the pre-flight check. This build resolves the source and stops there, saying so
     in the Reconciling condition — it never claims work it does not do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import conditions as cond
from .api import SUPPORTED_SOURCES, MigrationSpec, SpecError, image_major, parse_spec
from .conditions import Condition
from .observed import ContainerInfo, SourceObservation

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


@dataclass
class Plan:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)


def _pick_container(spec: MigrationSpec, containers: tuple[ContainerInfo, ...]) -> ContainerInfo | None:
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
        container = _pick_container(spec, sts.containers)
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
_PERMANENT = {"TargetNotNewer", "SourceVersionUnsupported", "InvalidSpec"}


def plan(
    body_spec: dict[str, Any],
    status: dict[str, Any],
    generation: int,
    observation: SourceObservation | None,
    now: datetime,
) -> Plan:
    old_conditions: list[Condition] = list(status.get("conditions") or [])
    conds = old_conditions
    new_status: dict[str, Any] = {"observedGeneration": generation}

    def setc(t: str, s: cond.Status, reason: str, message: str) -> None:
        nonlocal conds
        conds = cond.set_condition(conds, t, s, reason, message, generation, now)

    try:
        spec = parse_spec(body_spec)
        problems: list[Problem] = []
        resolved: ResolvedSource | None = None
        if observation is not None:
            resolved, problems = resolve_source(spec, observation)
    except SpecError as e:
        problems, resolved = [Problem("InvalidSpec", str(e))], None

    if problems:
        summary = " ".join(p.message for p in problems)
        permanent = any(p.reason in _PERMANENT for p in problems)
        phase = "Failed" if permanent else "Pending"
        first = problems[0].reason
        setc(cond.SOURCE_RESOLVED, "False", first, summary)
        setc(cond.READY, "False", first, summary)
        setc(cond.STALLED, "True", first, summary)
        setc(cond.RECONCILING, "False", first,
             "waiting for the spec or the source objects to be fixed" if not permanent
             else "nothing more will happen: create a new Migration")
        new_status["message"] = summary
    else:
        assert resolved is not None
        new_status["sourceVersion"] = str(resolved.major)
        new_status["sourceImage"] = resolved.image
        phase = "Checking"
        msg = (f"source resolved: PostgreSQL {resolved.major} (image {resolved.image}, container "
               f"{resolved.container}) -> {spec.target.version}")
        setc(cond.SOURCE_RESOLVED, "True", "SourceResolved", msg)
        conds = cond.remove_condition(conds, cond.STALLED)
        waiting = (msg + "; next step: the pre-flight check, which this operator build does not run yet. "
                   "The Migration waits here and does not touch the source.")
        setc(cond.READY, "False", "AwaitingPreflight", waiting)
        setc(cond.RECONCILING, "True", "AwaitingPreflight", waiting)
        new_status["message"] = waiting

    new_status["phase"] = phase
    new_status["conditions"] = conds
    return Plan(status=new_status, events=_events(status.get("phase"), phase, old_conditions, conds))


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
