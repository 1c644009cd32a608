"""Which post-data entries run as soon as a table's rows are in (postdata_plan.py), and when a
streamed table is split (stream.plan)."""

from dbmigrate.engines.postgres import postdata_plan
from dbmigrate.engines.postgres.stream import StreamTable, plan

# pg_restore --list of a real 18 dump (names unquoted, one with spaces), trimmed.
TOC = """;
; Archive created at 2026-11-27 16:06:37 UTC
;     dbname: postgres
;
; Selected TOC Entries:
;
214; 1259 16384 TABLE public we ird postgres
3367; 0 16384 TABLE DATA public we ird postgres
3210; 2606 16415 CONSTRAINT public we ird ex postgres
3218; 2606 16398 CONSTRAINT public p p_pkey postgres
3215; 2606 16390 CONSTRAINT public we ird we ird_pkey postgres
3211; 1259 16393 INDEX public idx x postgres
3377; 0 0 COMMENT public INDEX "idx x" postgres
3222; 0 0 INDEX ATTACH public p1_k_idx postgres
3224; 2606 16409 FK CONSTRAINT public r r_id_fkey postgres
"""

WEIRD = ("public", "we ird")
KEYS = {WEIRD: {(2606, 16415), (2606, 16390), (1259, 16393)},
        ("public", "p"): {(2606, 16398)},
        ("public", "gone"): {(1259, 99999)}}  # not in the archive: no list


def test_each_table_gets_exactly_its_own_entries_matched_by_oid_not_name() -> None:
    lists = postdata_plan.per_table(TOC, KEYS)
    assert set(lists) == {WEIRD, ("public", "p")}
    assert lists[WEIRD].splitlines() == [
        "3210; 2606 16415 CONSTRAINT public we ird ex postgres",
        "3215; 2606 16390 CONSTRAINT public we ird we ird_pkey postgres",
        "3211; 1259 16393 INDEX public idx x postgres"]
    # The table itself (catalog 1259 too, its own OID) and its rows are never part of it.
    assert "TABLE" not in lists[WEIRD].replace("TABLE DATA", "")
    assert lists[("public", "p")] == "3218; 2606 16398 CONSTRAINT public p p_pkey postgres\n"


def test_the_final_list_skips_what_was_built_early_and_keeps_everything_else() -> None:
    rest = postdata_plan.without(TOC, KEYS[WEIRD]).splitlines()
    assert ";3210; 2606 16415 CONSTRAINT public we ird ex postgres" in rest
    assert ";3211; 1259 16393 INDEX public idx x postgres" in rest
    # The comment on that index, the foreign key, other tables' keys, the header: untouched.
    for kept in ("3377; 0 0 COMMENT public INDEX \"idx x\" postgres",
                 "3224; 2606 16409 FK CONSTRAINT public r r_id_fkey postgres",
                 "3218; 2606 16398 CONSTRAINT public p p_pkey postgres",
                 "214; 1259 16384 TABLE public we ird postgres", "; Selected TOC Entries:"):
        assert kept in rest
    assert len(rest) == len(TOC.splitlines())


def _t(name: str, mb: int) -> StreamTable:
    return StreamTable("s", name, mb * 2**20, mb * 128, ["id"], True)


def test_tables_are_split_from_two_chunks_unless_told_a_higher_threshold() -> None:
    todo = [_t("big", 100), _t("mid", 40), _t("small", 10)]
    pieces = plan(todo, jobs=4, chunk_bytes=16 * 2**20)
    assert [(p.table.name, p.whole) for p in pieces].count(("big", False)) == 4
    assert sum(p.table.name == "mid" for p in pieces) == 2
    assert [p.whole for p in pieces if p.table.name == "small"] == [True]
    # A WAL-skipping target: splitting costs WAL, so only tables from split_bytes are split.
    pieces = plan(todo, jobs=4, chunk_bytes=16 * 2**20, split_bytes=64 * 2**20)
    assert sum(p.table.name == "big" for p in pieces) == 4
    assert [p.whole for p in pieces if p.table.name == "mid"] == [True]
    # Biggest first, and a split table's last piece is open-ended.
    assert [p.bytes for p in pieces] == sorted((p.bytes for p in pieces), reverse=True)
    assert [p.end_block for p in pieces if p.table.name == "big"].count(None) == 1
