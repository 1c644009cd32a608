"""Kubernetes-style status conditions (API conventions), as pure functions.

`lastTransitionTime` changes only when a condition's status flips, so a reconcile that finds
the same state writes nothing new (and GitOps tools see a stable object).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, NotRequired, TypedDict

Status = Literal["True", "False", "Unknown"]

# kstatus (Argo CD, Flux) reads these three; the rest are ours.
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
SOURCE_RESOLVED = "SourceResolved"
PREFLIGHT = "PreflightPassed"
COPY_VERIFIED = "CopyVerified"
BLOCKED = "Blocked"
TEST_REQUIRED = "TestRequired"
SMOKE_TEST = "SmokeTestPassed"
SWITCHOVER_APPROVED = "SwitchoverApproved"


class Condition(TypedDict):
    type: str
    status: Status
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: NotRequired[int]


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Return a new list with `type_` set; other conditions keep their order and content."""
    old = find(conditions, type_)
    transition = rfc3339(now)
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        transition = old["lastTransitionTime"]
    new: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    out = [c for c in conditions if c.get("type") != type_]
    out.append(new)
    return sorted(out, key=_order)


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.get("type") != type_]


_FIRST = (READY, RECONCILING, STALLED)


def _order(c: Condition) -> tuple[int, str]:
    # Ready/Reconciling/Stalled first (what people and tools read), then the rest by name,
    # so the list is deterministic and a no-op reconcile produces an identical status.
    t = c.get("type", "")
    return (_FIRST.index(t), "") if t in _FIRST else (len(_FIRST), t)
