from datetime import UTC, datetime, timedelta

from dbmigrate import conditions as c

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_set_new_condition() -> None:
    out = c.set_condition([], "Ready", "False", "Waiting", "msg", 3, T0)
    assert out == [{"type": "Ready", "status": "False", "reason": "Waiting", "message": "msg",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}]


def test_transition_time_kept_when_status_unchanged() -> None:
    a = c.set_condition([], "Ready", "False", "A", "a", 1, T0)
    b = c.set_condition(a, "Ready", "False", "B", "b", 2, T1)
    assert b[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert b[0]["reason"] == "B" and b[0]["observedGeneration"] == 2


def test_transition_time_moves_when_status_flips() -> None:
    a = c.set_condition([], "Ready", "False", "A", "a", 1, T0)
    b = c.set_condition(a, "Ready", "True", "Done", "ok", 1, T1)
    assert b[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_order_is_deterministic_and_input_untouched() -> None:
    conds = c.set_condition([], "SourceResolved", "True", "R", "", 1, T0)
    conds = c.set_condition(conds, "Stalled", "False", "S", "", 1, T0)
    conds = c.set_condition(conds, "Ready", "False", "W", "", 1, T0)
    before = list(conds)
    again = c.set_condition(conds, "Reconciling", "True", "X", "", 1, T0)
    assert [x["type"] for x in again] == ["Ready", "Reconciling", "Stalled", "SourceResolved"]
    assert conds == before


def test_find_is_true_remove() -> None:
    conds = c.set_condition([], "Ready", "True", "R", "", 1, T0)
    assert c.is_true(conds, "Ready") and not c.is_true(conds, "Stalled")
    assert c.find(conds, "Nope") is None
    assert c.remove_condition(conds, "Ready") == []
