"""A copy Job that fails reports why without quoting the customer's rows (real 15 and 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbmigrate.engines.postgres import jobmain
from pgtools import StartServer


def test_a_failed_copy_names_the_constraint_but_not_the_row(
        pg_factory: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    src, tgt = pg_factory(15), pg_factory(18)
    # A real-world restore failure: a CHECK that depends on session state the application had
    # when it wrote the rows, and the copy does not have.
    src.execute("CREATE DATABASE crm")
    src.execute("""
CREATE FUNCTION allowed() RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.allow', true), '') = 'on' $$;
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, CONSTRAINT customers_gate CHECK (allowed()));
SET app.allow = 'on';
INSERT INTO customers VALUES (1, 'alice@example.com'), (2, 'bob@example.com');""", "crm")
    for side, server in (("SOURCE", src), ("TARGET", tgt)):
        monkeypatch.setenv(f"{side}_HOST", server.host)
        monkeypatch.setenv(f"{side}_PORT", str(server.port))
        monkeypatch.setenv(f"{side}_USER", server.user)
        monkeypatch.setenv(f"{side}_PASSWORD", server.password)
    monkeypatch.setattr(jobmain, "TERMINATION_LOG", tmp_path / "termination-log")

    code = jobmain.main(["copy-verify", "--workdir", str(tmp_path / "work"), "--bindir", str(tgt.bindir)])

    assert code == 1
    result = json.loads((tmp_path / "termination-log").read_text())
    assert result["ok"] is False
    assert "customers_gate" in result["error"], result["error"]
    printed = capsys.readouterr()
    for text in (result["error"], printed.out, printed.err):
        assert "example.com" not in text
        assert src.password not in text and tgt.password not in text
