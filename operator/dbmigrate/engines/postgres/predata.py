"""Filter the pre-data script for options the target refuses.

Debian's 17.12 stores an attribute option ``pg_attver=<n>`` on every column; a newer pg_dump
faithfully dumps it as ``ALTER TABLE ONLY t ALTER COLUMN c SET (pg_attver=<n>);`` and
18.6 rejects the restore with 'unrecognized parameter "pg_attver"'. The copy probes the
target for each option in ``CANDIDATES`` and drops those it does not know from such
statements (the whole statement when nothing is left). Found by the 17->18 matrix test.
"""

from __future__ import annotations

import re

CANDIDATES = ("pg_attver",)

_SET_OPTIONS = re.compile(r"^(ALTER TABLE ONLY .+ ALTER COLUMN .+ SET \()(.*)(\);)$")


def filter_script(script: str, drop: set[str]) -> tuple[str, int]:
    """Return the script without the ``drop`` column options, and how many were dropped."""
    if not drop:
        return script, 0
    out: list[str] = []
    dropped = 0
    for line in script.split("\n"):
        m = _SET_OPTIONS.match(line)
        if m:
            opts = [o for o in m.group(2).split(", ")]
            kept = [o for o in opts if o.split("=", 1)[0] not in drop]
            dropped += len(opts) - len(kept)
            if not kept:
                continue
            line = m.group(1) + ", ".join(kept) + m.group(3)
        out.append(line)
    return "\n".join(out), dropped
