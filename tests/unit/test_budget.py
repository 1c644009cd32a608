"""The copy's share of the source's connection slots (budget.py)."""

from __future__ import annotations

import pytest

from dbmigrate.engines.postgres import jobmain
from dbmigrate.engines.postgres.budget import (
    MINIMUM,
    Parallelism,
    Slots,
    TooFewConnections,
    fit,
    per_lane,
)


def slots(free: int) -> Slots:
    return Slots(max_connections=100, reserved=3, in_use=97 - free)


def test_a_roomy_source_gets_what_was_asked() -> None:
    assert fit(slots(90), 2, 4) == Parallelism(2, 4)     # 90 free: 20 of them taken
    assert fit(Slots(500, 3, 10), 2, 4).sessions == 2 * per_lane(4)


def test_the_copy_takes_at_most_half_of_the_free_slots_fewer_lanes_first() -> None:
    p = fit(slots(30), 2, 4)           # half is 15: one lane of 4 jobs (10 sessions)
    assert p == Parallelism(1, 4) and p.sessions <= 15
    p = fit(slots(16), 2, 4)           # half is 8: one lane, 3 jobs
    assert p == Parallelism(1, 3) and p.sessions <= 8
    assert fit(slots(40), 3, 4) == Parallelism(2, 4)


def test_the_minimum_is_taken_even_above_half_and_refused_below_it() -> None:
    assert fit(slots(MINIMUM), 2, 4) == Parallelism(1, 1)
    assert fit(slots(MINIMUM + 3), 2, 4) == Parallelism(1, 1)
    with pytest.raises(TooFewConnections) as e:
        fit(Slots(max_connections=10, reserved=3, in_use=5), 2, 4)
    msg = str(e.value)
    assert "accepts 2 more connections" in msg and "max_connections 10, 3 reserved, 5 in use" in msg
    assert f"needs at least {MINIMUM}" in msg and "raise max_connections" in msg


def test_more_sessions_than_slots_count_as_none_free() -> None:
    assert Slots(max_connections=10, reserved=3, in_use=12).free == 0
    with pytest.raises(TooFewConnections):
        fit(Slots(10, 3, 12), 1, 1)


def test_requests_below_one_mean_one() -> None:
    assert fit(slots(100), 0, 0) == Parallelism(1, 1)


@pytest.mark.parametrize("bad", ["2", "0", "-0.5", "half"])
def test_the_copy_job_refuses_a_share_that_is_not_one(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        jobmain.main(["copy-verify", "--source-share", bad])
    assert e.value.code == 2
    assert f"{bad!r} is not a share: give a number above 0, at most 1" in capsys.readouterr().err
