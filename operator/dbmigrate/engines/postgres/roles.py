"""Make ``pg_dumpall --roles-only`` output safe to apply to a target that may already hold
some of the roles (a re-run, or the target's own administrator).

``CREATE ROLE x;`` becomes a block that ignores "already exists", and every statement about
the role the copy is logged in as on the target is dropped: its attributes and password on the
target belong to the operator (changing them mid-copy would lock the copy out).
"""

from __future__ import annotations

import re

_CREATE = re.compile(r'^CREATE ROLE ((?:"(?:[^"]|"")+")|[^\s;]+);$')
_ABOUT_ROLE = re.compile(r'^(?:CREATE|ALTER) ROLE ((?:"(?:[^"]|"")+")|[^\s;]+)[ ;]')
_SIMPLE = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(name: str) -> str:
    """How pg_dumpall writes a role name (fmtId): bare when it can be, else double-quoted."""
    if _SIMPLE.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def rewrite(script: str, skip_role: str) -> str:
    skip = {quote_ident(skip_role), '"' + skip_role.replace('"', '""') + '"'}
    out: list[str] = []
    for line in script.splitlines():
        about = _ABOUT_ROLE.match(line)
        if about and about.group(1) in skip:
            continue
        create = _CREATE.match(line)
        if create:
            line = ("DO $dbmigrate$ BEGIN " + line +
                    " EXCEPTION WHEN duplicate_object THEN NULL; END $dbmigrate$;")
        out.append(line)
    return "\n".join(out) + "\n"
