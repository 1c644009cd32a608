"""Prometheus metrics: what a platform team graphs and alerts on.

The reconcile loop reports each Migration's latest status here (`observe`); gauges are
computed from that table at scrape time, so a deleted Migration disappears (`forget`).
Nothing here talks to the Kubernetes API or to a database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter("dbmigrate_reconciles", "Reconciles run, by result.", ["result"], registry=REGISTRY)
PHASE_SECONDS = Histogram(
    "dbmigrate_phase_duration_seconds", "Time a Migration spent in a phase before leaving it.",
    ["phase"], registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
)


@dataclass
class _Seen:
    namespace: str
    name: str
    mode: str
    phase: str
    since: float
    bytes_copied: int = 0
    lag_bytes: int | None = None
    write_downtime: float | None = None


class _MigrationCollector(Collector):
    def __init__(self) -> None:
        self.seen: dict[str, _Seen] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_phase = GaugeMetricFamily("dbmigrate_migrations", "Migrations by phase and mode.",
                                     labels=["phase", "mode"])
        counts: dict[tuple[str, str], int] = {}
        for s in self.seen.values():
            counts[(s.phase, s.mode)] = counts.get((s.phase, s.mode), 0) + 1
        for (phase, mode), n in sorted(counts.items()):
            by_phase.add_metric([phase, mode], n)
        yield by_phase

        labels = ["namespace", "name"]
        copied = GaugeMetricFamily("dbmigrate_bytes_copied", "Bytes copied by the current copy.", labels=labels)
        lag = GaugeMetricFamily("dbmigrate_replication_lag_bytes", "Replication lag of an execute.",
                                labels=labels)
        down = GaugeMetricFamily("dbmigrate_last_write_downtime_seconds",
                                 "Measured write interruption of the switchover.", labels=labels)
        for s in self.seen.values():
            copied.add_metric([s.namespace, s.name], s.bytes_copied)
            if s.lag_bytes is not None:
                lag.add_metric([s.namespace, s.name], s.lag_bytes)
            if s.write_downtime is not None:
                down.add_metric([s.namespace, s.name], s.write_downtime)
        yield copied
        yield lag
        yield down


_COLLECTOR = _MigrationCollector()
REGISTRY.register(_COLLECTOR)


def observe(uid: str, namespace: str, name: str, mode: str, status: dict[str, Any],
            now: float | None = None) -> None:
    """Record a Migration's status; a phase change feeds the phase-duration histogram."""
    now = time.monotonic() if now is None else now
    phase = str(status.get("phase") or "Pending")
    prev = _COLLECTOR.seen.get(uid)
    if prev is None or prev.phase != phase:
        if prev is not None:
            PHASE_SECONDS.labels(prev.phase).observe(max(0.0, now - prev.since))
        cur = _Seen(namespace, name, mode, phase, now)
    else:
        cur = prev
        cur.mode = mode
    progress = status.get("progress") or {}
    cur.bytes_copied = int(progress.get("bytesCopied") or 0)
    lag = (status.get("replication") or {}).get("lagBytes")
    cur.lag_bytes = int(lag) if lag is not None else None
    down = (status.get("switchover") or {}).get("writeDowntimeSeconds")
    cur.write_downtime = float(down) if down is not None else None
    _COLLECTOR.seen[uid] = cur


def forget(uid: str) -> None:
    _COLLECTOR.seen.pop(uid, None)


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
    start_http_server(port, addr=addr, registry=REGISTRY)
