"""Static checks of the CRD file: complete documentation, and the chart ships the same file."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "dbmigrate.dev_migrations.yaml"
SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, child in (node.get("properties") or {}).items():
        out.append((f"{path}.{name}", child))
        out += _walk(child, f"{path}.{name}")
        if "items" in child:
            out += _walk(child["items"], f"{path}.{name}[]")
    return out


def test_every_field_is_described() -> None:
    """`kubectl explain migration.spec --recursive` documents the whole API."""
    # metadata is the apiserver's own (a CRD may not describe it).
    missing = [p for p, f in _walk(SCHEMA, "") if not f.get("description") and p != ".metadata"]
    assert missing == []


def test_every_cel_rule_has_a_message() -> None:
    rules = [r for _, f in _walk(SCHEMA, "") for r in f.get("x-kubernetes-validations", [])]
    rules += SCHEMA.get("x-kubernetes-validations", [])
    assert len(rules) >= 15
    assert all(r.get("message") for r in rules)


def test_status_schema_lists_what_the_planner_writes() -> None:
    """Fields missing from a status schema are silently pruned by the apiserver (kopf#527)."""
    status = SCHEMA["properties"]["status"]["properties"]
    for field in ("phase", "observedGeneration", "sourceVersion", "sourceImage", "message", "conditions",
                  "findings", "progress", "testServer", "switchover", "locked", "kopf", "strategy",
                  "replication", "target", "preflight", "estimate"):
        assert field in status, field
    nested = {"target": ("statefulSetName", "serviceName", "credentialsSecretName", "copyJobName", "host", "port",
                         "provisionedFor", "image"),
              "switchover": ("startedAt", "fencedAt", "pointOfNoReturnAt", "writeDowntimeSeconds",
                             "previousSelector", "retainSourceUntil", "completedAt"),
              "replication": ("lagBytes", "lagSeconds", "initialSyncDone", "databases"),
              "testServer": ("host", "port", "credentialsSecretName", "expiresAt"),
              "progress": ("percent", "display", "bytesCopied", "bytesTotal"),
              "preflight": ("checkedAt", "blockers", "warnings"),
              "estimate": ("executeSeconds", "writeDowntimeSeconds")}
    for parent, fields in nested.items():
        for field in fields:
            assert field in status[parent]["properties"], f"{parent}.{field}"


def test_chart_ships_the_same_crd() -> None:
    chart_copy = ROOT / "charts" / "dbmigrate" / "crds" / CRD.name
    assert chart_copy.read_text() == CRD.read_text(), "run: cp crds/*.yaml charts/dbmigrate/crds/"
