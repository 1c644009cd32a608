"""The streamed copy's work queue (stream._Queue with a Release): pure, no servers."""

from __future__ import annotations

from dbmigrate.engines.postgres.stream import Piece, Release, StreamTable, _Queue, plan


def _t(name: str, size: int) -> StreamTable:
    return StreamTable("s", name, size, max(1, size // 8192), ["id"], True)


def _names(q: _Queue, gate: Release) -> list[str]:
    out = []
    with gate.cond:
        q.promote(gate)
        while (p := q.pop()) is not None:
            out.append(p.table.name)
    return out


def test_only_released_tables_are_handed_out_biggest_first() -> None:
    gate = Release()
    q = _Queue(plan([_t("a", 300), _t("b", 200), _t("c", 100)], jobs=4))
    assert _names(q, gate) == []          # nothing exists on the target yet
    gate.add({("s", "c"), ("s", "a")})
    assert _names(q, gate) == ["a", "c"]  # biggest released first; b still waits
    assert q                              # b is pending
    gate.add({("s", "b")})
    assert _names(q, gate) == ["b"]
    assert not q


def test_a_release_before_the_queue_looks_is_not_lost_and_close_releases_the_rest() -> None:
    gate = Release()
    gate.add({("s", "b")})                # released before the copy first asks
    q = _Queue(plan([_t("a", 300), _t("b", 200), _t("c", 100)], jobs=4))
    assert _names(q, gate) == ["b"]
    gate.close()                          # the schema is done: every table exists
    assert _names(q, gate) == ["a", "c"]


def test_the_pieces_of_a_split_table_come_out_with_the_others_by_size() -> None:
    big = _t("big", 100 * 1024 * 1024)
    pieces = plan([big, _t("small", 1000)], jobs=2, chunk_bytes=32 * 1024 * 1024)
    assert [p.whole for p in pieces].count(False) == 2
    gate = Release(everything=True)
    q = _Queue(pieces)
    with gate.cond:
        q.promote(gate)
        got: list[Piece] = []
        while (p := q.pop()) is not None:
            got.append(p)
    assert [p.table.name for p in got] == ["big", "big", "small"]
    assert {p.first_block for p in got if p.table.name == "big"} == {0, big.blocks // 2}
