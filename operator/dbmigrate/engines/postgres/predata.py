"""Prepare the pre-data script (``pg_restore --create --section=pre-data -f``) for the target.

``split_create``: the script creates the database, then ``\\connect``s to it. The part after
the connect (the whole schema) runs in ONE transaction: thousands of CREATE TABLE / ALTER
... OWNER statements as separate commits took 13 s against 8.6 s for 2000 small tables (and
each commit waits for the disk on a durable server); CREATE DATABASE cannot be in a transaction
block, so it runs on its own.

``filter_script``: options the target refuses.

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


def split_create(script: str) -> tuple[str, str]:
    """(statements before the first ``\\connect``, statements after it). The second part
    loses every ``\\connect``: all of them reconnect to the same new database (16's pg_restore
    writes a second one after the database's properties), and a reconnect would silently
    end the single transaction, dropping what came before it."""
    lines = script.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("\\connect "):
            rest = [x for x in lines[i + 1:] if not x.startswith("\\connect ")]
            return "\n".join(lines[:i]) + "\n", "\n".join(rest)
    return script, ""
