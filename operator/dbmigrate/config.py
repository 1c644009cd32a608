"""Operator configuration from the environment (the Helm chart sets these variables)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .api import SpecError, parse_duration
from .resources import quantity_bytes

DEFAULT_IMAGES = {15: "postgres:15", 16: "postgres:16", 17: "postgres:17", 18: "postgres:18"}
# The copy Job's image per target major: that version's client tools + the dbmigrate engine.
DEFAULT_WORKER_IMAGES = {m: f"dbmigrate-worker:{m}" for m in DEFAULT_IMAGES}


class ConfigError(ValueError):
    pass


def _images(text: str | None, defaults: dict[int, str] = DEFAULT_IMAGES,
            var: str = "DBMIGRATE_IMAGES") -> dict[int, str]:
    """DBMIGRATE_IMAGES='15=postgres:15,17=registry.local/pg:17' overrides the defaults."""
    images = dict(defaults)
    for item in filter(None, (text or "").replace(";", ",").split(",")):
        major, sep, image = item.strip().partition("=")
        if not sep or not major.strip().isdigit() or not image.strip():
            raise ConfigError(
                f"{var} entry {item!r} must look like '17=postgres:17' (major=image)"
            )
        images[int(major)] = image.strip()
    return images


# Strategy dump loads a source this big or bigger without WAL. Measured here (1138 MB, 15 -> 18,
# four alternating runs each): 17.2-20.6 s without WAL, 23.6-25.8 s with (WAL 121 vs 916 MB),
# about 5 s per GB saved. The restart it costs within the write interruption: 2 s from the
# restart to the repoint in e2e, up to ~7 s (readiness probe every 5 s). 4Gi keeps a margin.
DEFAULT_WAL_FREE_LOAD_MIN_BYTES = 4 * 2**30

DEFAULT_COPY_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name}={raw!r} must be a whole number from {low} to {high}")
    return int(raw)


def _resources(name: str, default: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """A container's resources as JSON, e.g. '{"requests": {"cpu": "500m"}}'; '{}': none."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return {k: dict(v) for k, v in default.items()}
    hint = (f'{name} must be JSON like {{"requests": {{"cpu": "500m", "memory": "256Mi"}}, '
            f'"limits": {{"memory": "1Gi"}}}}')
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{hint}: {e}") from e
    if not isinstance(value, dict) or set(value) - {"requests", "limits"} or not all(
            isinstance(v, dict) and all(isinstance(q, str | int | float) for q in v.values())
            for v in value.values()):
        raise ConfigError(f"{hint}, got {raw!r}")
    return {k: {r: str(q) for r, q in v.items()} for k, v in value.items() if v}


def _optional_bytes(name: str, default: int | None) -> int | None:
    """A size as a Kubernetes quantity ('4Gi', '500M', '0'), or 'never' (None)."""
    raw = (os.environ.get(name) or "").strip()
    if raw == "":
        return default
    if raw == "never":
        return None
    value = quantity_bytes(raw)
    if value is None:
        raise ConfigError(f"{name}={raw!r} must be a size like 4Gi or 500Mi (0: always), or never")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} must be a number of seconds") from e
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _duration(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    try:
        parse_duration(raw, name)
    except SpecError as e:
        raise ConfigError(str(e)) from e
    return raw


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{name}={raw!r} must be a port number (0 disables)")
    return int(raw)


@dataclass(frozen=True)
class Config:
    # How often every Migration is reconciled even when nothing changed (level-based safety net).
    resync_seconds: float = 10.0
    images: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    worker_images: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_WORKER_IMAGES))
    log_format: str = "text"
    # Namespace the operator runs in (downward API); its pods may reach target servers.
    operator_namespace: str | None = None
    preflight_timeout: float = 300.0
    # Defaults for Migrations that leave spec.test.ttl / spec.execute.retainSourceFor out.
    default_test_ttl: str = "24h"
    default_retain_source_for: str = "168h"
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 9090
    # The copy Jobs: parallel table streams, and the pod's resources (requests for namespaces
    # whose ResourceQuota demands them; no CPU limit: the copy is CPU-bound, a limit only
    # slows it down).
    copy_parallelism: int = 2
    copy_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_COPY_RESOURCES.items()})
    # Strategy dump: sources at least this big are loaded without WAL (two restarts of the new
    # server, one within the write interruption); None: never (executeplan.wal_free_load).
    wal_free_load_min_bytes: int | None = DEFAULT_WAL_FREE_LOAD_MIN_BYTES

    @staticmethod
    def from_env() -> Config:
        fmt = os.environ.get("DBMIGRATE_LOG_FORMAT", "text")
        if fmt not in ("text", "json"):
            raise ConfigError(f"DBMIGRATE_LOG_FORMAT={fmt!r} must be text or json")
        return Config(
            resync_seconds=_float("DBMIGRATE_RESYNC_SECONDS", 10.0),
            images=_images(os.environ.get("DBMIGRATE_IMAGES")),
            worker_images=_images(os.environ.get("DBMIGRATE_WORKER_IMAGES"), DEFAULT_WORKER_IMAGES,
                                  "DBMIGRATE_WORKER_IMAGES"),
            log_format=fmt,
            operator_namespace=os.environ.get("DBMIGRATE_NAMESPACE") or None,
            preflight_timeout=_float("DBMIGRATE_PREFLIGHT_TIMEOUT_SECONDS", 300.0),
            metrics_port=_port("DBMIGRATE_METRICS_PORT", 9090),
            default_test_ttl=_duration("DBMIGRATE_DEFAULT_TEST_TTL", "24h"),
            default_retain_source_for=_duration("DBMIGRATE_DEFAULT_RETAIN_SOURCE_FOR", "168h"),
            copy_parallelism=_int("DBMIGRATE_COPY_PARALLELISM", 2, 1, 64),
            copy_resources=_resources("DBMIGRATE_COPY_RESOURCES", DEFAULT_COPY_RESOURCES),
            wal_free_load_min_bytes=_optional_bytes("DBMIGRATE_WAL_FREE_LOAD_MIN_BYTES",
                                                    DEFAULT_WAL_FREE_LOAD_MIN_BYTES),
        )
