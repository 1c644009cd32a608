"""Builders for the source objects a Migration points at (StatefulSet, Service, Secret)."""

from __future__ import annotations

from typing import Any

import kubernetes


def statefulset(name: str = "pg", image: str = "postgres:15", labels: dict[str, str] | None = None,
                container: str = "postgres", resources: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    c: dict[str, Any] = {"name": container, "image": image, **({"resources": resources} if resources else {})}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": name, "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [c]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}],
        },
    }


def service(name: str = "pg", selector: dict[str, str] | None = None, port: int = 5432) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector or {"app": "pg"}, "ports": [{"port": port}]}}


def secret(name: str = "pg-admin", keys: tuple[str, ...] = ("username", "password")) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {k: f"value-of-{k}" for k in keys}}


def create(api: kubernetes.client.ApiClient, ns: str, *docs: dict[str, Any]) -> None:
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    for d in docs:
        kind = d["kind"]
        if kind == "StatefulSet":
            apps.create_namespaced_stateful_set(ns, d)
        elif kind == "Service":
            core.create_namespaced_service(ns, d)
        elif kind == "Secret":
            core.create_namespaced_secret(ns, d)
        else:
            raise ValueError(kind)
