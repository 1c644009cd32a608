"""Run a client-tool ``Command``, feeding its stderr lines to a callback as they come."""

from __future__ import annotations

import os
import subprocess
from collections import deque
from collections.abc import Callable

from ...redact import redact
from .commands import Command

# Only what the tools need from our environment: no stray PG* variable may override a Command's.
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def _reason(tail: list[str]) -> list[str]:
    """The tool's error line and what follows it (QUERY, CONTEXT, "Command was"); the last
    lines when none says error. pg_restore's error line comes before four or more others."""
    lines = [line for line in tail if line.strip()]
    for i, line in enumerate(lines):
        if "error:" in line.lower() or "FATAL:" in line:
            return lines[i:i + 5]
    return lines[-5:]


class CommandFailed(RuntimeError):
    def __init__(self, cmd: Command, code: int, tail: list[str]) -> None:
        self.cmd, self.code, self.tail = cmd, code, tail
        super().__init__(f"{cmd.argv[0]} exited {code}: " + redact(" | ".join(_reason(tail))))


def run(cmd: Command, on_line: Callable[[str], None] | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env.update(cmd.env)
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(cmd.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        assert proc.stderr is not None
        try:
            for raw in proc.stderr:
                line = raw.rstrip("\n")
                tail.append(line)
                if on_line:
                    on_line(line)
        except BaseException:
            # Our caller is going away (error in a callback, cancellation): take the tool along
            # rather than leave it writing to a database nobody tracks.
            proc.kill()
            raise
        code = proc.wait()
    if code != 0:
        raise CommandFailed(cmd, code, list(tail))
