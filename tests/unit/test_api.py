from datetime import timedelta

import pytest

from dbmigrate.api import SpecError, format_duration, image_major, parse_duration, parse_spec

MIN = {"source": {"statefulSetName": "pg", "serviceName": "pg", "credentialsSecretName": "s"},
       "target": {"version": "17"}}


@pytest.mark.parametrize(("text", "expected"), [
    ("24h", timedelta(hours=24)), ("1h30m", timedelta(minutes=90)), ("500ms", timedelta(milliseconds=500)),
    ("30s", timedelta(seconds=30)), ("1.5h", timedelta(minutes=90)), ("2h0m5s", timedelta(hours=2, seconds=5)),
])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "x") == expected


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "5 m", "1h-5m", "abc"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SpecError, match="must be a duration like 24h"):
        parse_duration(text, "spec.test.ttl")


def test_format_duration_roundtrip() -> None:
    for d in (timedelta(hours=24), timedelta(minutes=90), timedelta(seconds=5), timedelta(0)):
        assert parse_duration(format_duration(d), "x") == d


@pytest.mark.parametrize(("image", "major"), [
    ("postgres:15", 15), ("postgres:15.6-bookworm", 15), ("docker.io/library/postgres:16@sha256:abc", 16),
    ("registry:5000/lib/postgres:17", 17), ("bitnami/postgresql:15.4.0-debian-11-r0", 15),
    ("ghcr.io/cloudnative-pg/postgresql:18-minimal", 18), ("postgres:v14", 14),
    ("postgres", None), ("postgres:latest", None), ("registry:5000/postgres", None), ("pg:alpine", None),
])
def test_image_major(image: str, major: int | None) -> None:
    assert image_major(image) == major


def test_defaults() -> None:
    s = parse_spec(MIN)
    assert s.mode == "test" and s.engine == "postgresql"
    assert s.source.port == 5432 and s.source.username_key == "username" and s.source.password_key == "password"
    assert s.target.version == 17 and s.target.image is None
    assert s.test.ttl == timedelta(hours=24)
    assert s.execute.strategy == "auto"
    assert s.execute.max_write_downtime == timedelta(seconds=30)
    assert s.execute.retain_source_for == timedelta(hours=168)


def test_full_spec() -> None:
    s = parse_spec({**MIN, "mode": "execute",
                    "source": {**MIN["source"], "version": 15, "containerName": "db", "port": 5433},
                    "target": {"version": 18, "image": "pg:18", "storage": {"size": "20Gi", "storageClassName": "x"},
                               "resources": {"requests": {"cpu": "1", "memory": 1024}}},
                    "test": {"ttl": "2h"}, "execute": {"strategy": "dump", "maxWriteDowntime": "5s"}})
    assert s.mode == "execute" and s.source.version == 15 and s.source.container_name == "db"
    assert s.target.version == 18 and s.target.storage_size == "20Gi" and s.target.storage_class_name == "x"
    assert s.target.resources == {"requests": {"cpu": "1", "memory": "1024"}}
    assert s.test.ttl == timedelta(hours=2) and s.execute.strategy == "dump"


@pytest.mark.parametrize(("spec", "message"), [
    ({**MIN, "mode": "upgrade"}, "spec.mode must be test or execute"),
    ({**MIN, "engine": "mysql"}, "spec.engine 'mysql' is not supported"),
    ({"target": {"version": "17"}}, "spec.source is required"),
    ({**MIN, "target": {}}, "spec.target.version is required"),
    ({**MIN, "target": {"version": "14"}}, "spec.target.version 14 is not supported"),
    ({**MIN, "target": {"version": "x"}}, "spec.target.version must be a major version number"),
    ({**MIN, "source": {"serviceName": "pg", "credentialsSecretName": "s"}}, "spec.source.statefulSetName is required"),
    ({**MIN, "execute": {"strategy": "fast"}}, "spec.execute.strategy must be auto, logical or dump"),
    ({**MIN, "test": {"ttl": "1d"}}, "spec.test.ttl must be a duration"),
])
def test_parse_spec_errors(spec: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        parse_spec(spec)


def test_operator_defaults_fill_only_what_is_missing() -> None:
    from dbmigrate.api import with_operator_defaults

    filled = with_operator_defaults(MIN, "12h", "72h")
    s = parse_spec(filled)
    assert s.test.ttl == timedelta(hours=12) and s.execute.retain_source_for == timedelta(hours=72)
    mine = with_operator_defaults({**MIN, "test": {"ttl": "2h"}, "execute": {"retainSourceFor": "5h"}}, "12h", "72h")
    s = parse_spec(mine)
    assert s.test.ttl == timedelta(hours=2) and s.execute.retain_source_for == timedelta(hours=5)
    assert "test" not in MIN  # the input is not changed
