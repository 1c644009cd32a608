"""Withhold row values and secrets from error text before it reaches status, events or logs.

PostgreSQL's errors quote the customer's data and statements:
  - a failing row: ``DETAIL:  Failing row contains (1, alice@example.com).``
  - a key: ``DETAIL:  Key (email)=(alice@example.com) already exists.``
  - the text that did not parse: ``invalid input syntax for type integer: "zz12"``
  - the COPY line being read: ``CONTEXT:  COPY t, line 3: "1<TAB>alice@example.com"``
  - the statement: ``LINE 1: INSERT ... 'zz12'`` and its caret line, or pg_restore's
    ``Command was: CREATE ROLE app PASSWORD 'SCRAM-SHA-256$...'``.
Status, events and the Job's termination message are read by far more people (a customer
panel, ``kubectl describe``, log pipelines) than the database is, so those values are
replaced with ``…``. Names (tables, constraints, columns, types) stay: they say what to fix.
Pure text in, text out; no imports beyond ``re``.
"""

from __future__ import annotations

import re

WITHHELD = "…"

_SUBS: list[tuple[re.Pattern[str], str]] = [
    # Row and key values (unique, foreign key, exclusion and check violations).
    (re.compile(r"Failing row contains \(.*\)"), f"Failing row contains ({WITHHELD})"),
    (re.compile(r"Key \((.*?)\)=\(.*\)"), rf"Key (\1)=({WITHHELD})"),
    # The line COPY was reading, whole or one column of it.
    (re.compile(r"(COPY [^\n]*?, line \d+(?:, column [^:\n]+)?): [^\n]*"), rf"\1: {WITHHELD}"),
    # Passwords and their hashes in statements (roles are copied with them).
    (re.compile(r"(PASSWORD\s+)'(?:[^']|'')*'", re.IGNORECASE), r"\1'***'"),
    (re.compile(r"SCRAM-SHA-256\$[^\s'\"]+"), "SCRAM-SHA-256$***"),
    (re.compile(r"\bmd5[0-9a-f]{32}\b"), "md5***"),
]

# Messages whose double-quoted part is a value, not a name ("invalid input syntax for type
# integer: "zz12"", "value "99999999999" is out of range for type integer").
_VALUE_MESSAGE = re.compile(r"invalid input|malformed|out of range|invalid value|invalid byte sequence")
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
# The statement echo under an error: "LINE 3: ...", then spaces and a caret.
_STATEMENT_ECHO = re.compile(r"^\s*(?:\S+:\s+)?(?:LINE \d+:.*|\^)\s*$")


def redact(text: str, *secret_values: str) -> str:
    """``text`` without row values, statement echoes, passwords and ``secret_values``."""
    for value in secret_values:
        if value:
            text = text.replace(value, "***")
    lines = []
    for line in text.split("\n"):
        if _STATEMENT_ECHO.match(line):
            continue
        for pattern, replacement in _SUBS:
            line = pattern.sub(replacement, line)
        if _VALUE_MESSAGE.search(line):
            line = _QUOTED.sub(f'"{WITHHELD}"', line)
        lines.append(line)
    return "\n".join(lines)
