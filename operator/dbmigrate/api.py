"""Typed view of a Migration's spec: parsing, defaults and the small value formats it uses.

The apiserver already validates and defaults (crds/), so parsing here is a second line of
defence: it applies the same defaults for objects written before a default existed and turns
anything unexpected into a `SpecError` with a message a user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

GROUP = "dbmigrate.dev"
VERSION = "v1alpha1"
PLURAL = "migrations"
KIND = "Migration"

Mode = Literal["test", "execute"]
SwitchoverMode = Literal["Automatic", "Manual"]
# With spec.execute.switchover=Manual, this annotation set to "true" lets the switchover start
# (an annotation, not a spec field: the spec is frozen once in execute mode).
APPROVE_ANNOTATION = f"{GROUP}/approve-switchover"
# Each new value of this annotation asks once to start a failed step again (retry.py): what
# deleting its Job does, for those who may edit a Migration but not its Jobs (a panel, GitOps).
RETRY_ANNOTATION = f"{GROUP}/retry"
Strategy = Literal["auto", "logical", "dump"]

SUPPORTED_TARGETS = (15, 16, 17, 18)
# pg_dump of any supported target reads servers back to 9.2, but logical replication and the
# checks we ship are written for these majors.
SUPPORTED_SOURCES = (12, 13, 14, 15, 16, 17)


class SpecError(ValueError):
    """The spec cannot be used; the message says what to change."""


@dataclass(frozen=True)
class SourceSpec:
    stateful_set_name: str
    service_name: str
    credentials_secret_name: str
    username_key: str = "username"
    password_key: str = "password"  # noqa: S105 - a key name, not a password
    port: int = 5432
    container_name: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class TargetSpec:
    version: int
    image: str | None = None
    storage_size: str | None = None
    storage_class_name: str | None = None
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SmokeTestSpec:
    config_map: str | None = None
    key: str = "smoke.sql"
    database: str = "postgres"
    template: Mapping[str, Any] | None = None
    timeout: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class TestSpec:
    ttl: timedelta = timedelta(hours=24)
    smoke: SmokeTestSpec | None = None


@dataclass(frozen=True)
class ExecuteSpec:
    strategy: Strategy = "auto"
    max_write_downtime: timedelta = timedelta(seconds=30)
    retain_source_for: timedelta = timedelta(hours=168)
    require_successful_test: bool = False
    successful_test_max_age: timedelta = timedelta(hours=168)
    switchover: SwitchoverMode = "Automatic"


@dataclass(frozen=True)
class MigrationSpec:
    mode: Mode
    engine: str
    source: SourceSpec
    target: TargetSpec
    test: TestSpec = TestSpec()
    execute: ExecuteSpec = ExecuteSpec()


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str) -> timedelta:
    """Parse a Go-style duration ('24h', '1h30m', '500ms'), the format the CRD documents."""
    pos, seconds = 0, 0.0
    text = text.strip()
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise SpecError(f"{what} must be a duration like 24h, 90m or 30s, not {text!r}")
    return timedelta(seconds=seconds)


def format_duration(d: timedelta) -> str:
    total = int(d.total_seconds())
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not total else "")
    return out


def parse_major(value: Any, what: str) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"\d{1,2}", text):
        raise SpecError(f'{what} must be a major version number such as "17", not {text!r}')
    return int(text)


# postgres:15, postgres:15.6-bookworm, registry:5000/lib/postgres:16@sha256:..,
# bitnami/postgresql:15.4.0-debian-11-r0 -> the first number of the tag.
_TAG_MAJOR = re.compile(r"^v?(\d{1,2})(?:[.\-_]|$)")


def image_major(image: str) -> int | None:
    """The major version an image reference names in its tag, or None when it does not say."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.split(":", 1)[1]
    m = _TAG_MAJOR.match(tag)
    return int(m.group(1)) if m else None


def _str(d: Mapping[str, Any], key: str, what: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v:
        raise SpecError(f"{what} is required and must be a non-empty string")
    return v


def _smoke(raw: Mapping[str, Any] | None) -> SmokeTestSpec | None:
    if not raw:
        return None
    sql, job = raw.get("sql"), raw.get("job")
    if bool(sql) == bool(job):
        raise SpecError("spec.test.smokeTest needs exactly one of sql or job")
    timeout = parse_duration(raw.get("timeout", "10m"), "spec.test.smokeTest.timeout")
    if sql:
        return SmokeTestSpec(config_map=_str(sql, "configMapName", "spec.test.smokeTest.sql.configMapName"),
                             key=sql.get("key", "smoke.sql"), database=sql.get("database", "postgres"),
                             timeout=timeout)
    template = job.get("template") if isinstance(job, Mapping) else None
    if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
        raise SpecError("spec.test.smokeTest.job.template must be a pod template with a spec")
    return SmokeTestSpec(template=template, timeout=timeout)


def with_operator_defaults(spec: Mapping[str, Any], test_ttl: str, retain_source_for: str) -> dict[str, Any]:
    """The spec with the operator-wide defaults filled in where the user left a field out.
    (The CRD leaves these two without a default so that the platform team can choose them.)"""
    out = dict(spec)
    out["test"] = {"ttl": test_ttl, **(spec.get("test") or {})}
    out["execute"] = {"retainSourceFor": retain_source_for, **(spec.get("execute") or {})}
    return out


def parse_spec(spec: Mapping[str, Any]) -> MigrationSpec:
    """Turn a (possibly partial) spec mapping into a MigrationSpec or raise SpecError."""
    mode = spec.get("mode", "test")
    if mode not in ("test", "execute"):
        raise SpecError(f"spec.mode must be test or execute, not {mode!r}")
    engine = spec.get("engine", "postgresql")
    if engine != "postgresql":
        raise SpecError(f"spec.engine {engine!r} is not supported; use postgresql")

    src = spec.get("source")
    if not isinstance(src, Mapping):
        raise SpecError("spec.source is required")
    src_version = src.get("version")
    source = SourceSpec(
        stateful_set_name=_str(src, "statefulSetName", "spec.source.statefulSetName"),
        service_name=_str(src, "serviceName", "spec.source.serviceName"),
        credentials_secret_name=_str(src, "credentialsSecretName", "spec.source.credentialsSecretName"),
        username_key=_str(src, "usernameKey", "spec.source.usernameKey", "username"),
        password_key=_str(src, "passwordKey", "spec.source.passwordKey", "password"),
        port=int(src.get("port", 5432)),
        container_name=src.get("containerName") or None,
        version=None if src_version is None else parse_major(src_version, "spec.source.version"),
    )

    tgt = spec.get("target")
    if not isinstance(tgt, Mapping) or "version" not in tgt:
        raise SpecError("spec.target.version is required")
    storage = tgt.get("storage") or {}
    resources = tgt.get("resources") or {}
    target = TargetSpec(
        version=parse_major(tgt["version"], "spec.target.version"),
        image=tgt.get("image") or None,
        storage_size=storage.get("size") or None,
        storage_class_name=storage.get("storageClassName") or None,
        resources={k: {rk: str(rv) for rk, rv in v.items()} for k, v in resources.items() if v},
    )
    if target.version not in SUPPORTED_TARGETS:
        raise SpecError(
            f"spec.target.version {target.version} is not supported; use one of "
            + ", ".join(str(v) for v in SUPPORTED_TARGETS)
        )

    test = spec.get("test") or {}
    exe = spec.get("execute") or {}
    strategy = exe.get("strategy", "auto")
    if strategy not in ("auto", "logical", "dump"):
        raise SpecError(f"spec.execute.strategy must be auto, logical or dump, not {strategy!r}")
    switchover = exe.get("switchover", "Automatic")
    if switchover not in ("Automatic", "Manual"):
        raise SpecError(f"spec.execute.switchover must be Automatic or Manual, not {switchover!r}")
    return MigrationSpec(
        mode=mode,
        engine=engine,
        source=source,
        target=target,
        test=TestSpec(ttl=parse_duration(test.get("ttl", "24h"), "spec.test.ttl"),
                      smoke=_smoke(test.get("smokeTest"))),
        execute=ExecuteSpec(
            strategy=strategy,
            max_write_downtime=parse_duration(
                exe.get("maxWriteDowntime", "30s"), "spec.execute.maxWriteDowntime"
            ),
            retain_source_for=parse_duration(
                exe.get("retainSourceFor", "168h"), "spec.execute.retainSourceFor"
            ),
            require_successful_test=bool((exe.get("requireSuccessfulTest") or {}).get("enabled", False)),
            successful_test_max_age=parse_duration(
                (exe.get("requireSuccessfulTest") or {}).get("maxAge", "168h"),
                "spec.execute.requireSuccessfulTest.maxAge"),
            switchover=switchover,
        ),
    )
