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
    children it waited for (psql, pg_dump, ...) and the given servers: for each postmaster its
    own time, its exited children's (backends) and its live children's (checkpointer,
    walwriter, backends still connected). The sum at both ends of the window is the same
    accounting, so a child that exits inside it counts only its time inside it. On a machine
    with few cores the copy is CPU-bound: this says where a method's time went and how many
    cores it kept busy. (The servers are this process's children too, but none is stopped
    inside a window, so RUSAGE_CHILDREN never counts one.)"""

    def __init__(self, *postmaster_pids: int) -> None:
        self._pids = postmaster_pids
        self._start = self._now()

    @staticmethod
    def _stat(pid: str | int) -> list[str]:
        # After the command name: state, ppid, ..., utime (14th field), stime, cutime, cstime.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    def _servers(self) -> float:
        ticks = 0
        for pid in self._pids:
            ticks += sum(int(x) for x in self._stat(pid)[11:15])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                f = self._stat(entry.name)
            except OSError:  # exited meanwhile: its time is in its parent's cutime now
                continue
            if int(f[1]) in self._pids:
                ticks += int(f[11]) + int(f[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def _now(self) -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + self._servers()

    def seconds(self) -> float:
        time.sleep(0.3)  # let the postmasters reap the backends that just ended
        return self._now() - self._start
