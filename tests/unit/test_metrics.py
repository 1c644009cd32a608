from prometheus_client import generate_latest

from dbmigrate import metrics


def _text() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_phase_counts_and_durations() -> None:
    metrics.observe("u1", "ns", "a", "test", {"phase": "Pending"}, now=100.0)
    metrics.observe("u2", "ns", "b", "execute", {"phase": "Pending"}, now=100.0)
    text = _text()
    assert 'dbmigrate_migrations{mode="test",phase="Pending"} 1.0' in text
    assert 'dbmigrate_migrations{mode="execute",phase="Pending"} 1.0' in text
    metrics.observe("u1", "ns", "a", "test", {"phase": "Provisioning", "progress": {"bytesCopied": 42}}, now=130.0)
    text = _text()
    assert 'dbmigrate_phase_duration_seconds_sum{phase="Pending"} 30.0' in text
    assert 'dbmigrate_bytes_copied{name="a",namespace="ns"} 42.0' in text
    metrics.observe("u2", "ns", "b", "execute",
                    {"phase": "Completed", "switchover": {"writeDowntimeSeconds": 0.8},
                     "replication": {"lagBytes": 0}}, now=140.0)
    text = _text()
    assert 'dbmigrate_last_write_downtime_seconds{name="b",namespace="ns"} 0.8' in text
    assert 'dbmigrate_replication_lag_bytes{name="b",namespace="ns"} 0.0' in text
    metrics.forget("u1")
    metrics.forget("u2")
    assert 'name="a"' not in _text()
