"""Shared bits of the benchmarks: servers (tests/pgtools), timing, result files."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "operator"))

RESULTS = ROOT / "bench" / "results"

# Same settings for every server of a benchmark, tuned for bulk work on a small machine;
# durability is off everywhere alike, so no method gains from it.
BENCH_SETTINGS = {
    "shared_buffers": "256MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "256MB",
    "max_parallel_maintenance_workers": "2",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {"benchmark": name, "at": stamp, "cpus": os.cpu_count(), **data}
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}-latest.json").write_text(json.dumps(data, indent=2) + "\n")
    return path


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class CpuMeter:
    """CPU seconds spent, from when it is made until ``seconds()``, by this process, the
    children it waited for (psql, pg_dump, ...) and the given servers: a postmaster's own
    time plus that of its exited children (every backend of a finished run has exited).
    On a machine with few cores the copy is CPU-bound: this says where a method's time went
    and how many cores it kept busy."""

    def __init__(self, *postmaster_pids: int) -> None:
        self._pids = postmaster_pids
        self._start = self._now()

    @staticmethod
    def _tree(pid: int) -> float:
        # /proc/<pid>/stat fields 14-17: utime, stime, cutime, cstime (clock ticks)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def _now(self) -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
                + sum(self._tree(p) for p in self._pids))

    def seconds(self) -> float:
        time.sleep(0.3)  # let the postmasters reap the last backends
        return self._now() - self._start
