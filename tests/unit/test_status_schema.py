"""Every status field the planner writes is declared in the CRD: the apiserver silently prunes
undeclared fields of a structural schema, and a pruned marker (e.g. switchover.abortedAt) once
made a failed execute start over."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from dbmigrate import executeplan as xp
from dbmigrate.api import parse_spec
from dbmigrate.observed import ExecuteObservation, JobObservation, ReplicationObservation

from .test_executeplan import NOW, SPEC, checked, merged, step

CRD = Path(__file__).resolve().parents[2] / "crds" / "dbmigrate.dev_migrations.yaml"


def _status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"])


def undeclared(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            return [p for k, v in value.items() for p in undeclared(v, extra, f"{path}.{k}")] if isinstance(
                extra, dict) else []
        out = [f"{path}.{k}" for k in value if k not in props]
        return out + [p for k, v in value.items() if k in props for p in undeclared(v, props[k], f"{path}.{k}")]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for i, v in enumerate(value) for p in undeclared(v, schema["items"], f"{path}[{i}]")]
    return []


def test_execute_statuses_are_declared() -> None:
    schema = _status_schema()
    done = JobObservation(succeeded=True)
    old = {"app": "pg"}
    statuses = []
    st = merged(checked(), step(checked()))
    st = merged(st, step(st, ExecuteObservation(schema_job=done, service_selector=old)))
    p = step(st, ExecuteObservation(schema_job=done, service_selector=old,
                                    replication=ReplicationObservation(3, 3, True, 10, 0.1)))
    st = merged(st, p)
    statuses.append(st)
    aborted = merged(st, xp.after_abort(st, 1, NOW, "timeout", cleaned=False))
    statuses += [aborted, merged(aborted, xp.after_restore(aborted, 1, NOW))]
    ponr = merged(st, xp.after_switchover(st, 1, NOW + timedelta(seconds=1), 0.5))
    statuses += [ponr, merged(ponr, xp.after_finalize(ponr, 1, NOW, parse_spec(SPEC)))]
    for s in statuses:
        assert undeclared(s, schema) == [], s


def test_the_checker_catches_an_undeclared_field() -> None:
    assert undeclared({"switchover": {"nope": 1}}, _status_schema()) == ["status.switchover.nope"]
