"""Operator configuration from the environment (the Helm chart sets these variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .api import SpecError, parse_duration

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
        )
