"""How much of the source's connections the copy may take (pure).

Why: a database copied with ``jobs`` row workers holds up to ``2 + 2 * jobs`` source sessions
at once (the exported snapshot, the schema dump or its catalog queries, and per worker its
session plus the psql that streams a big table), and databases copy side by side
(``lanes``). A hosting customer's server runs close to ``max_connections`` more often than
not: a copy that takes every free slot gets "sorry, too many clients already" half way
through, and so do the applications it must leave alone (test mode runs beside
production). So the copy takes at most half of the slots free when it starts (but the
minimum, one worker, when at least that much is free), fewer lanes first (they only help
servers with several databases), then fewer workers, and refuses to start, saying why, when
not even one worker fits. The execute copy of strategy dump runs while the source refuses
writes: it may take every free slot (``share`` 1, resources.copy_job).
"""

from __future__ import annotations

from dataclasses import dataclass

# The share of the free slots the copy may take: the rest stays with the applications.
SHARE = 0.5


def per_lane(jobs: int) -> int:
    """Source sessions one database's copy holds at its peak."""
    return 2 + 2 * jobs


MINIMUM = per_lane(1)


@dataclass(frozen=True)
class Slots:
    max_connections: int
    reserved: int   # superuser_reserved_connections + reserved_connections (16+)
    in_use: int     # client sessions now, this one included

    @property
    def free(self) -> int:
        return max(0, self.max_connections - self.reserved - self.in_use)

    def describe(self) -> str:
        return (f"max_connections {self.max_connections}, {self.reserved} reserved, "
                f"{self.in_use} in use")


class TooFewConnections(RuntimeError):
    """Not even one database with one worker fits in the source's free connections."""


@dataclass(frozen=True)
class Parallelism:
    lanes: int
    jobs: int

    @property
    def sessions(self) -> int:
        return self.lanes * per_lane(self.jobs)


def fit(slots: Slots, lanes: int, jobs: int, *, share: float = SHARE) -> Parallelism:
    """The most of ``lanes`` x ``jobs`` within ``share`` of the free slots (at least the
    minimum, when the free slots hold it)."""
    lanes, jobs = max(1, lanes), max(1, jobs)
    if slots.free < MINIMUM:
        raise TooFewConnections(
            f"the source accepts {slots.free} more connections ({slots.describe()}); the copy "
            f"needs at least {MINIMUM}: raise max_connections on the source or end idle "
            "sessions")
    budget = max(MINIMUM, int(slots.free * share))
    lanes = min(lanes, max(1, budget // per_lane(jobs)))
    if lanes == 1 and per_lane(jobs) > budget:
        jobs = max(1, (budget - 2) // 2)
    return Parallelism(lanes, jobs)
