"""Copy progress shared by databases copied side by side (engines/postgres/tally.py)."""

from __future__ import annotations

import threading

from dbmigrate.engines.base import Progress
from dbmigrate.engines.postgres.tally import Tally


def test_counts_from_many_threads_add_up_and_every_report_is_whole() -> None:
    seen: list[tuple[int, int]] = []
    tally = Tally(Progress(bytes_total=4 * 1000 * 10, tables_total=4 * 1000), lambda p: seen.append(
        (p.bytes_copied, p.tables_copied)))

    def count(db: str) -> None:
        for _ in range(1000):
            tally.add(db, 10, 1, f"copying {db}")

    threads = [threading.Thread(target=count, args=(f"db{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tally.prog.bytes_copied, tally.prog.tables_copied) == (40_000, 4000)
    # Each report shows both counters of the same moment: never bytes of one add and tables of another.
    assert all(b == 10 * n for b, n in seen)
    assert [b for b, _ in seen] == sorted(b for b, _ in seen)


def test_a_database_copied_again_takes_back_only_its_own_counts() -> None:
    tally = Tally(Progress(bytes_total=300, tables_total=3), None)
    tally.add("shop", 100, 1)
    tally.add("crm", 50, 1)
    tally.add("shop", 20, 1)
    tally.take_back("shop")
    assert (tally.prog.bytes_copied, tally.prog.tables_copied) == (50, 1)
    tally.add("shop", 120, 2)  # the second attempt counts afresh
    tally.take_back("other")   # nothing counted: nothing taken
    assert (tally.prog.bytes_copied, tally.prog.tables_copied) == (170, 3)
    tally.database_done()
    tally.say("")
    assert tally.prog.databases_copied == 1 and tally.prog.current == ""
