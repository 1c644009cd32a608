"""A failed client tool is reported with its own error line, not only its last lines."""

import pytest

from dbmigrate.engines.postgres.commands import Command
from dbmigrate.engines.postgres.runner import CommandFailed, run


def test_the_error_line_leads_the_message_even_when_many_lines_follow_it() -> None:
    # What pg_restore prints: the error, then QUERY / CONTEXT / Command was / blank lines.
    script = ('echo "pg_restore: processing item 1" >&2; '
              'echo "pg_restore: error: could not execute query: ERROR:  boom" >&2; '
              'for i in 1 2 3 4 5 6; do echo "detail $i" >&2; echo >&2; done; exit 3')
    with pytest.raises(CommandFailed) as e:
        run(Command(["sh", "-c", script]))
    assert e.value.code == 3
    assert str(e.value) == ("sh exited 3: pg_restore: error: could not execute query: ERROR:  boom"
                            " | detail 1 | detail 2 | detail 3 | detail 4")


def test_without_an_error_line_the_last_lines_are_the_message() -> None:
    with pytest.raises(CommandFailed, match=r"^sh exited 1: c \| d$"):
        run(Command(["sh", "-c", "echo c >&2; echo d >&2; exit 1"]))
