import pytest

from dbmigrate.config import DEFAULT_IMAGES, Config, ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("DBMIGRATE_IMAGES", "DBMIGRATE_RESYNC_SECONDS", "DBMIGRATE_LOG_FORMAT"):
        monkeypatch.delenv(k, raising=False)
    cfg = Config.from_env()
    assert cfg.images == DEFAULT_IMAGES and cfg.resync_seconds == 10.0 and cfg.log_format == "text"


def test_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBMIGRATE_IMAGES", "17=registry.local/pg:17, 18=pg:18-custom,")
    monkeypatch.setenv("DBMIGRATE_RESYNC_SECONDS", "2.5")
    monkeypatch.setenv("DBMIGRATE_LOG_FORMAT", "json")
    cfg = Config.from_env()
    assert cfg.images[17] == "registry.local/pg:17" and cfg.images[18] == "pg:18-custom"
    assert cfg.images[15] == "postgres:15"
    assert cfg.resync_seconds == 2.5 and cfg.log_format == "json"


@pytest.mark.parametrize(("var", "value", "message"), [
    ("DBMIGRATE_IMAGES", "postgres:17", "must look like '17=postgres:17'"),
    ("DBMIGRATE_IMAGES", "x=pg", "must look like"),
    ("DBMIGRATE_RESYNC_SECONDS", "soon", "must be a number of seconds"),
    ("DBMIGRATE_RESYNC_SECONDS", "-1", "must be positive"),
    ("DBMIGRATE_LOG_FORMAT", "xml", "must be text or json"),
    ("DBMIGRATE_COPY_PARALLELISM", "0", "must be a whole number from 1 to 64"),
    ("DBMIGRATE_COPY_PARALLELISM", "many", "must be a whole number from 1 to 64"),
    ("DBMIGRATE_COPY_RESOURCES", "cpu=1", 'must be JSON like {"requests"'),
    ("DBMIGRATE_COPY_RESOURCES", '{"requests": "1"}', 'must be JSON like'),
    ("DBMIGRATE_COPY_RESOURCES", '{"request": {"cpu": "1"}}', 'must be JSON like'),
    ("DBMIGRATE_WAL_FREE_LOAD_MIN_BYTES", "4 GB", "must be a size like 4Gi or 500Mi"),
    ("DBMIGRATE_WAL_FREE_LOAD_MIN_BYTES", "off", "or never"),
])
def test_bad_values(monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=message):
        Config.from_env()


def test_default_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBMIGRATE_DEFAULT_TEST_TTL", "6h")
    monkeypatch.setenv("DBMIGRATE_DEFAULT_RETAIN_SOURCE_FOR", "720h")
    cfg = Config.from_env()
    assert cfg.default_test_ttl == "6h" and cfg.default_retain_source_for == "720h"
    monkeypatch.setenv("DBMIGRATE_DEFAULT_TEST_TTL", "1 day")
    with pytest.raises(ConfigError, match="must be a duration like 24h"):
        Config.from_env()


def test_copy_job_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("DBMIGRATE_COPY_PARALLELISM", "DBMIGRATE_COPY_RESOURCES"):
        monkeypatch.delenv(k, raising=False)
    cfg = Config.from_env()
    assert cfg.copy_parallelism == 2
    assert cfg.copy_resources == {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    monkeypatch.setenv("DBMIGRATE_COPY_PARALLELISM", "8")
    monkeypatch.setenv("DBMIGRATE_COPY_RESOURCES", '{"requests": {"cpu": 2, "memory": "1Gi"}, "limits": {}}')
    cfg = Config.from_env()
    assert cfg.copy_parallelism == 8 and cfg.copy_resources == {"requests": {"cpu": "2", "memory": "1Gi"}}
    monkeypatch.setenv("DBMIGRATE_COPY_RESOURCES", "{}")
    assert Config.from_env().copy_resources == {}


def test_wal_free_load_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBMIGRATE_WAL_FREE_LOAD_MIN_BYTES", raising=False)
    assert Config.from_env().wal_free_load_min_bytes == 4 * 2**30
    for raw, value in (("500Mi", 500 * 2**20), ("0", 0), ("never", None), ("1G", 10**9)):
        monkeypatch.setenv("DBMIGRATE_WAL_FREE_LOAD_MIN_BYTES", raw)
        assert Config.from_env().wal_free_load_min_bytes == value
