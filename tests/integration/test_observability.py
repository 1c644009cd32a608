"""Metrics scraped from the running operator's /metrics endpoint, and JSON logs that name the
Migration on every line about it."""

from __future__ import annotations

import json
import re
import urllib.request

import kubernetes
import pytest

from .conftest import GROUP, PLURAL, VERSION, OperatorProcess, wait_for
from .manifests import migration

pytestmark = pytest.mark.integration


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _value(text: str, metric: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_migrations_by_phase(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                           namespace: str) -> None:
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, migration("metrics-probe"))
    text = wait_for(lambda: (lambda t: t if _value(t, "dbmigrate_bytes_copied", namespace=namespace,
                                                   name="metrics-probe") is not None else None)(
        _scrape(operator.metrics_port)), what="metrics for the new Migration")
    # Counted in whatever phase it is in by now (other tests' Migrations may come and go).
    assert sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("dbmigrate_migrations{") and 'mode="test"' in line) >= 1
    assert _value(text, "dbmigrate_bytes_copied", namespace=namespace, name="metrics-probe") == 0
    ok = _value(text, "dbmigrate_reconciles_total", result="ok")
    assert ok is not None and ok >= 1
    assert "dbmigrate_phase_duration_seconds_bucket" in text or "dbmigrate_phase_duration_seconds" in text


def test_logs_are_json_and_name_the_migration(operator: OperatorProcess, api: kubernetes.client.ApiClient,
                                              namespace: str) -> None:
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, migration("log-probe"))

    def status_lines() -> list[dict[str, object]]:
        out = []
        for line in operator.tail(100000).splitlines():
            if namespace in line and "status: phase=" in line:
                out.append(json.loads(line))
        return out

    lines = wait_for(status_lines, what="a JSON status log line")
    rec = lines[0]
    assert rec["object"] == {"apiVersion": "dbmigrate.dev/v1alpha1", "kind": "Migration", "name": "log-probe",
                             "uid": rec["object"]["uid"], "namespace": namespace}  # type: ignore[index]
    # Every line the operator wrote is JSON (a plain-text line would break log pipelines).
    bad = [ln for ln in operator.tail(100000).splitlines() if ln.strip() and not _is_json(ln)]
    assert bad == [], bad[:3]
    assert not re.search(r"value-of-password", operator.tail(100000))


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
