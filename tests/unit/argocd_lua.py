"""Run docs/argocd-health.lua the way Argo CD does (the object as the global `obj`) with a real Lua
interpreter from Debian (hack/lua.sh installs lua5.4 when missing)."""

from __future__ import annotations

import functools
import math
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "argocd-health.lua"


@functools.cache
def lua() -> str:
    out = subprocess.run(["bash", str(ROOT / "hack" / "lua.sh")], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def to_lua(value: Any) -> str:
    """A Lua table constructor for JSON-like data (Argo CD hands the object over as such a table)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        out = []
        for b in value.encode():
            ch = chr(b)
            out.append(ch if 32 <= b < 127 and ch not in "\\\"" else f"\\{b:03d}")
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{to_lua(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(type(value))


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD would show them."""
    program = (f"obj = {to_lua(obj)}\n"
               f"local check = assert(loadfile({to_lua(str(SCRIPT))}))\n"
               "local hs = check()\n"
               "io.write(hs.status, '\\n', hs.message or '')\n")
    r = subprocess.run([lua(), "-"], input=program, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    status, _, message = r.stdout.partition("\n")
    return status, message
