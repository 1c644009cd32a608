"""Row values, statement echoes and passwords never reach status, events or logs; names do.

The inputs are PostgreSQL's message formats: the check, unique and invalid-input ones as a real
18 server printed them (tests/dataplane/test_job_errors.py runs one through a real failing copy),
the others written after the server's and pg_restore's message texts.
"""

from __future__ import annotations

import pytest

from dbmigrate.actions import safe_error
from dbmigrate.observed import JobObservation
from dbmigrate.redact import redact

CASES = [
    # (what PostgreSQL said, what may be published)
    ('new row for relation "t" violates check constraint "t_email_check"\n'
     "DETAIL:  Failing row contains (1, alice@example.com, 1).",
     'new row for relation "t" violates check constraint "t_email_check"\n'
     "DETAIL:  Failing row contains (…)."),
    ('duplicate key value violates unique constraint "users_email_key"\n'
     "DETAIL:  Key (email)=(alice@example.com) already exists.",
     'duplicate key value violates unique constraint "users_email_key"\n'
     "DETAIL:  Key (email)=(…) already exists."),
    ('insert or update on table "orders" violates foreign key constraint "orders_customer_fkey"\n'
     'DETAIL:  Key (customer_id)=(42) is not present in table "customers".',
     'insert or update on table "orders" violates foreign key constraint "orders_customer_fkey"\n'
     'DETAIL:  Key (customer_id)=(…) is not present in table "customers".'),
    ("invalid input syntax for type integer: \"zz12\"\n"
     "LINE 1: INSERT INTO t VALUES (3, 'bob@x', 'zz12')\n"
     "                                          ^",
     'invalid input syntax for type integer: "…"'),
    ('value "99999999999" is out of range for type integer',
     'value "…" is out of range for type integer'),
    ("psql:<stdin>:1: ERROR:  invalid input value for enum mood: \"furious\"\n"
     "CONTEXT:  COPY people, line 3, column mood: \"furious\"",
     "psql:<stdin>:1: ERROR:  invalid input value for enum mood: \"…\"\n"
     "CONTEXT:  COPY people, line 3, column mood: …"),
    ('ERROR:  new row for relation "t" violates check constraint "c"\n'
     'CONTEXT:  COPY t, line 1: "1\talice@example.com\t1"',
     'ERROR:  new row for relation "t" violates check constraint "c"\n'
     "CONTEXT:  COPY t, line 1: …"),
    ("pg_restore: error: could not execute query: ERROR:  role \"app\" already exists\n"
     "Command was: CREATE ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc=$def:ghi=';",
     "pg_restore: error: could not execute query: ERROR:  role \"app\" already exists\n"
     "Command was: CREATE ROLE app WITH LOGIN PASSWORD '***';"),
    ("ALTER ROLE old ENCRYPTED password 'md5a3556571e93b0d20722ba62be61e8c2d'",
     "ALTER ROLE old ENCRYPTED password '***'"),
]


@pytest.mark.parametrize(("said", "published"), CASES)
def test_values_are_withheld_and_names_kept(said: str, published: str) -> None:
    assert redact(said) == published


def test_secret_values_are_masked_wherever_they_appear() -> None:
    said = 'password authentication failed for user "app" (tried s3cr3t-pw)'
    assert redact(said, "s3cr3t-pw", "") == 'password authentication failed for user "app" (tried ***)'


def test_messages_without_values_are_unchanged() -> None:
    said = ('relation "sales.orders" does not exist\n'
            "HINT:  create it first, or copy the schema (strategy logical step 1)")
    assert redact(said) == said


def test_safe_error_is_the_redacted_first_line() -> None:
    e = RuntimeError("invalid input syntax for type integer: \"4111-1111\"\nLINE 1: SELECT '4111-1111'::int")
    assert safe_error(e) == 'invalid input syntax for type integer: "…"'
    assert safe_error(RuntimeError("")) == "RuntimeError"


def test_a_failed_jobs_report_is_redacted_again_before_it_is_published() -> None:
    """An older worker image may have written the value into its termination message."""
    job = JobObservation(failed=True, result={"ok": False, "error": (
        "CheckViolation: new row for relation \"t\" violates check constraint \"c\"\n"
        "DETAIL:  Failing row contains (1, alice@example.com).")})
    assert "alice" not in job.error and 'check constraint "c"' in job.error
    assert JobObservation(failed=True, failure="BackoffLimitExceeded").error == "BackoffLimitExceeded"
