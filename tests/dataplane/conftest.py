"""Fixtures for the dataplane tier: real PostgreSQL servers of the four majors on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgtools import MAJORS, PgServer, StartServer, start_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.dataplane)


@pytest.fixture
def pg_factory() -> Iterator[StartServer]:
    """``pg_factory(major, settings=None)`` starts a fresh server; all are stopped at teardown."""
    started: list[PgServer] = []

    def start(major: int, settings: dict[str, str] | None = None) -> PgServer:
        s = start_server(major, settings)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(params=MAJORS, ids=[f"pg{m}" for m in MAJORS])
def pg(request: pytest.FixtureRequest, pg_factory: StartServer) -> PgServer:
    """A fresh server of each major in turn."""
    return pg_factory(int(request.param))


@pytest.fixture(scope="session")
def pg15_shared() -> Iterator[PgServer]:
    """One 15 server for read-mostly tests; each test uses its own database."""
    s = start_server(15)
    yield s
    s.stop()
