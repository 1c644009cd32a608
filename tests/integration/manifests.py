"""Migration manifests for tests: one valid baseline and helpers to derive variants."""

from __future__ import annotations

import copy
from typing import Any


def migration(name: str = "m1", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "pg-admin"},
        "target": {"version": "17"},
    }
    spec.update(spec_overrides)
    return {"apiVersion": "dbmigrate.dev/v1alpha1", "kind": "Migration",
            "metadata": {"name": name}, "spec": spec}


def with_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of doc with the dotted path set (value DELETE removes the key)."""
    out = copy.deepcopy(doc)
    node = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    if value is DELETE:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return out


DELETE = object()
