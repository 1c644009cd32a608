"""Every chart value is documented in docs/operations.md and typed in values.schema.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dbmigrate"


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node and not all(k.isdigit() for k in node):
        return [p for k, v in node.items() for p in _leaves(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    doc = (ROOT / "docs" / "operations.md").read_text()
    # resources/nodeSelector/... are documented as a group, not per key.
    leaves = [v for v in _leaves(values) if not v.startswith(("resources.", "copyJob.resources.",
                                                                "metrics.service.annotations",
                                                                "metrics.serviceMonitor.labels"))]
    missing = [v for v in leaves if f"`{v}`" not in doc and f"`{v.rsplit('.', 1)[0]}.*`" not in doc]
    assert missing == [], f"document these chart values in docs/operations.md: {missing}"


def test_every_top_level_value_is_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert sorted(set(values) - set(schema["properties"])) == []
