"""SQL of the snapshot copy's bookkeeping on the target (database ``_dbmigrate``)."""

from psycopg import sql

STATE_TABLE = """
CREATE TABLE IF NOT EXISTS copy_state (
    item text PRIMARY KEY,          -- 'roles' or 'db:<name>'
    done_at timestamptz NOT NULL DEFAULT now(),
    diff jsonb                      -- a database's verification, when the copy verified it
);
ALTER TABLE copy_state ADD COLUMN IF NOT EXISTS diff jsonb  -- state left by an older version
"""
DONE_ITEMS = "SELECT item, diff FROM copy_state"
MARK_DONE = "INSERT INTO copy_state (item, diff) VALUES (%s, %s) ON CONFLICT (item) DO NOTHING"
DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"
WAL_LEVEL = "SELECT current_setting('wal_level') AS wal_level"


def create_database(name: str) -> sql.Composed:
    return sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))


def drop_database(name: str) -> sql.Composed:
    # FORCE: a half-restored database may still have a pg_restore worker connected.
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))


def probe_column_option(option: str) -> sql.Composed:
    """Fails with 'unrecognized parameter' when the server does not know the option; run in
    a transaction that is rolled back."""
    return sql.SQL(
        "CREATE TEMP TABLE dbmigrate_probe (a int); "
        "ALTER TABLE dbmigrate_probe ALTER COLUMN a SET ({} = 1)").format(sql.Identifier(option))


def set_setting(name: str, value: str) -> sql.Composed:
    return sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
