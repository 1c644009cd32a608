"""What an engine provides, as plain typed data the operator can put into status.

The operator never imports a database driver; it only sees these types. An engine
(e.g. ``engines.postgres``) implements inventory, pre-flight checks, copy, verification
and the online-switchover primitives, and reports through these structures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One pre-flight result; ``code`` is stable so panels and tests can key on it."""

    severity: Severity
    code: str
    object: str
    message: str
    hint: str
    # Which strategies the finding concerns: "all", or only "logical" (online) / "dump".
    # A logical-only blocker means "use strategy dump", not "cannot migrate".
    applies_to: str = "all"

    def to_status(self) -> dict[str, str]:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "object": self.object,
            "message": self.message,
            "hint": self.hint,
            "appliesTo": self.applies_to,
        }


@dataclass
class Progress:
    """Copy progress; the operator maps it onto ``status.progress``."""

    bytes_copied: int = 0
    bytes_total: int = 0
    tables_copied: int = 0
    tables_total: int = 0
    databases_copied: int = 0
    databases_total: int = 0
    current: str = ""

    @property
    def percent(self) -> int:
        if self.bytes_total > 0:
            return min(100, int(100 * self.bytes_copied / self.bytes_total))
        if self.tables_total > 0:
            return min(100, int(100 * self.tables_copied / self.tables_total))
        return 0

    def to_status(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "percent": self.percent,
            "bytesCopied": d["bytes_copied"],
            "bytesTotal": d["bytes_total"],
            "tablesCopied": d["tables_copied"],
            "tablesTotal": d["tables_total"],
        }


ProgressCallback = Callable[[Progress], None]


@dataclass
class VerificationDiff:
    """Differences between source and target; empty lists mean the copy is verified."""

    rows: list[str] = field(default_factory=list)
    checksums: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.rows or self.checksums or self.sequences or self.objects)

    def extend(self, more: VerificationDiff) -> None:
        """Add the differences of another part (a database, the globals)."""
        self.rows += more.rows
        self.checksums += more.checksums
        self.sequences += more.sequences
        self.objects += more.objects

    def summary(self, limit: int = 5) -> str:
        parts = self.rows + self.checksums + self.sequences + self.objects
        if not parts:
            return "no differences"
        more = f" (+{len(parts) - limit} more)" if len(parts) > limit else ""
        return "; ".join(parts[:limit]) + more
