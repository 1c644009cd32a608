"""The pre-data script cut into steps; runs of independent tables may be reordered (schema_plan.py)."""

from dbmigrate.engines.postgres import schema_plan, stream_sql
from dbmigrate.engines.postgres.schema_plan import Run, Serial


def _entry(kind: str, schema: str, name: str, sql: str) -> str:
    return f"--\n-- Name: {name}; Type: {kind}; Schema: {schema}; Owner: app\n--\n\n{sql}\n\n"


def _table(schema: str, name: str) -> str:
    return _entry("TABLE", schema, name, f"CREATE TABLE {schema}.{name} (id int);\n\n"
                                         f"ALTER TABLE {schema}.{name} OWNER TO app;")


PREAMBLE = ("\\restrict abc\n\nSET statement_timeout = 0;\n"
            "SELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\n\n")


def test_parse_splits_entries_and_tracks_the_settings_in_force() -> None:
    script = (PREAMBLE + _entry("SCHEMA", "-", "s", "CREATE SCHEMA s;")
              + "SET default_tablespace = '';\n\n"
              + _table("s", "a")
              + "SET default_tablespace = fast;\n\n"
              + _table("s", "b") + "\\unrestrict abc\n")
    preamble, entries = schema_plan.parse(script)
    assert "\\restrict" not in preamble and "SET statement_timeout = 0;" in preamble
    assert [(e.kind, e.schema, e.name) for e in entries] == [
        ("SCHEMA", "-", "s"), ("TABLE", "s", "a"), ("TABLE", "s", "b")]
    assert "\\unrestrict" not in entries[-1].sql
    # Each entry carries the settings it would have had in the script, wherever it runs.
    assert entries[0].settings == ("SET statement_timeout = 0;",
                                   "SELECT pg_catalog.set_config('search_path', '', false);",
                                   "SET check_function_bodies = false;")
    assert entries[1].settings[-1] == "SET default_tablespace = '';"
    assert entries[2].settings[-1] == "SET default_tablespace = fast;"
    assert len(entries[2].settings) == 4  # a later SET replaces, it does not add


def test_only_consecutive_independent_tables_form_a_run() -> None:
    tables = [_table("s", f"t{i}") for i in range(10)]
    script = (PREAMBLE + _entry("SCHEMA", "-", "s", "CREATE SCHEMA s;") + "".join(tables[:5])
              + _entry("COMMENT", "s", "TABLE t4", "COMMENT ON TABLE s.t4 IS 'x';")
              + _entry("COMMENT", "s", "COLUMN t4.id", "COMMENT ON COLUMN s.t4.id IS 'y';")
              + "".join(tables[5:])
              + _table("s", "child")
              + _entry("VIEW", "s", "v", "CREATE VIEW s.v AS SELECT 1;"))
    _, entries = schema_plan.parse(script)
    independent = {("s", f"t{i}") for i in range(10)}
    steps = schema_plan.plan(entries, independent, min_run=8)
    assert [type(s) for s in steps] == [Serial, Run, Serial]
    first, run, rest = steps
    assert isinstance(first, Serial) and isinstance(run, Run) and isinstance(rest, Serial)
    assert [e.name for e in first.entries] == ["s"]
    assert [[e.name for e in g] for g in run.groups][4] == ["t4", "TABLE t4", "COLUMN t4.id"]
    assert len(run.groups) == 10
    # "child" is not independent (say, it inherits): it and all after it stay in order.
    assert [e.name for e in rest.entries] == ["child", "v"]


def test_a_short_run_stays_in_order() -> None:
    script = PREAMBLE + "".join(_table("s", f"t{i}") for i in range(3)) + _entry(
        "VIEW", "s", "v", "CREATE VIEW s.v AS SELECT 1;")
    _, entries = schema_plan.parse(script)
    steps = schema_plan.plan(entries, {("s", "t0"), ("s", "t1"), ("s", "t2")}, min_run=8)
    assert len(steps) == 1 and isinstance(steps[0], Serial)
    assert [e.name for e in steps[0].entries] == ["t0", "t1", "t2", "v"]


def test_a_comment_on_another_table_ends_the_run() -> None:
    script = PREAMBLE + "".join(_table("s", f"t{i}") for i in range(8)) + _entry(
        "COMMENT", "s", "TABLE other", "COMMENT ON TABLE s.other IS 'x';") + "".join(
        _table("s", f"u{i}") for i in range(8))
    _, entries = schema_plan.parse(script)
    independent = {("s", f"t{i}") for i in range(8)} | {("s", f"u{i}") for i in range(8)}
    steps = schema_plan.plan(entries, independent, min_run=8)
    assert [type(s) for s in steps] == [Run, Serial, Run]


def _serial_table(schema: str, name: str, seq_comment: bool = False) -> str:
    """A table with a serial column, as pg_dump writes it: table, sequence (and its comment),
    OWNED BY."""
    return _table(schema, name) + _entry(
        "SEQUENCE", schema, f"{name}_id_seq", f"CREATE SEQUENCE {schema}.{name}_id_seq\n    CACHE 1;"
    ) + (_entry("COMMENT", schema, f"SEQUENCE {name}_id_seq",
                f"COMMENT ON SEQUENCE {schema}.{name}_id_seq IS 'x';") if seq_comment else ""
         ) + _entry("SEQUENCE OWNED BY", schema, f"{name}_id_seq",
               f"ALTER SEQUENCE {schema}.{name}_id_seq OWNED BY {schema}.{name}.id;")


def test_serial_and_identity_sequences_stay_in_the_run() -> None:
    script = (PREAMBLE + "".join(_serial_table("s", f"t{i}", seq_comment=i == 7) for i in range(8))
              + _table("s", "u")
              + _entry("SEQUENCE", "s", "u_id_seq",
                       "ALTER TABLE s.u ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (\n"
                       "    SEQUENCE NAME s.u_id_seq\n);")
              + _entry("DEFAULT", "s", "t0 id", "ALTER TABLE ONLY s.t0 ALTER COLUMN id SET DEFAULT 1;"))
    _, entries = schema_plan.parse(script)
    steps = schema_plan.plan(entries, {("s", f"t{i}") for i in range(8)} | {("s", "u")})
    assert [type(s) for s in steps] == [Run, Serial]
    run, rest = steps
    assert isinstance(run, Run) and isinstance(rest, Serial)
    # Sequences need no table: first. OWNED BY and identities need their table: last.
    assert [e.name for e in run.hoisted] == [f"t{i}_id_seq" for i in range(8)] + ["SEQUENCE t7_id_seq"]
    assert run.hoisted[-1].kind == "COMMENT"
    assert [g[0].name for g in run.groups] == [f"t{i}" for i in range(8)] + ["u"]
    assert [(e.kind, e.name) for e in run.deferred] == [
        ("SEQUENCE OWNED BY", f"t{i}_id_seq") for i in range(8)] + [("SEQUENCE", "u_id_seq")]
    assert len(run.original) == len(entries) - 1  # everything but the DEFAULT, in script order
    assert [e.name for e in rest.entries] == ["t0 id"]


def test_a_short_run_with_sequences_keeps_the_script_order() -> None:
    script = PREAMBLE + "".join(_serial_table("s", f"t{i}") for i in range(3))
    _, entries = schema_plan.parse(script)
    (step,) = schema_plan.plan(entries, {("s", f"t{i}") for i in range(3)})
    assert isinstance(step, Serial) and step.entries == entries


def test_first_puts_the_given_tables_ahead_keeping_the_rest_in_order() -> None:
    script = PREAMBLE + "".join(_table("s", f"t{i}") for i in range(10))
    _, entries = schema_plan.parse(script)
    (run,) = schema_plan.plan(entries, {("s", f"t{i}") for i in range(10)})
    assert isinstance(run, Run)
    ordered = schema_plan.first(run.groups, {("s", "t7"): 3, ("s", "t2"): 9})
    assert [g[0].name for g in ordered] == ["t2", "t7", "t0", "t1", "t3", "t4", "t5", "t6", "t8", "t9"]


def test_batches_cover_every_group_in_order() -> None:
    groups = [[e] for e in schema_plan.parse(
        PREAMBLE + "".join(_table("s", f"t{i}") for i in range(120)))[1]]
    out = schema_plan.batches(groups)
    assert [len(b) for b in out] == [8, 50, 50, 12]
    assert [g for b in out for g in b] == groups


def test_table_patterns_one_per_schema_quoted_and_chunked() -> None:
    pats = stream_sql.patterns([("s", "a"), ("s", 'b"q'), ("Odd|S", "x.y"), ("s", "c")])
    assert pats == ['"s".("a"|"b""q"|"c")', '"Odd|S".("x.y")']
    many = stream_sql.patterns([("s", f"table_{i:06d}") for i in range(20000)])
    assert len(many) == 4 and all(len(p) < 128 * 1024 for p in many)  # 6666 names each
    assert sum(p.count("|") + 1 for p in many) == 20000
