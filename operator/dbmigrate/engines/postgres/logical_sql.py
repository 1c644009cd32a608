"""SQL of the online (logical replication) switchover. Identifiers via psycopg.sql only."""

from __future__ import annotations

from psycopg import sql

# --- source ---
PUBLICATION_EXISTS = "SELECT 1 FROM pg_publication WHERE pubname = %s"
SLOT_EXISTS = "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s"
CREATE_SLOT = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')"
SLOT_STATE = """
SELECT active, active_pid, confirmed_flush_lsn::text AS confirmed,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots WHERE slot_name = %s
"""
# replay_lag is NULL when the walsender has nothing in flight.
REPLAY_LAG = """
SELECT coalesce(extract(epoch FROM replay_lag), 0)::float AS seconds
FROM pg_stat_replication WHERE application_name = %s
"""
SLOT_CONFIRMED_PAST = """
SELECT confirmed_flush_lsn >= %s::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = %s
"""
DROP_SLOT = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"
SYNC_SLOTS = """
SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s AND NOT active
"""
DROP_SLOT_BY_NAME = "SELECT pg_drop_replication_slot(%s)"
CURRENT_LSN = "SELECT pg_current_wal_lsn()::text AS lsn"
SYNC_COMMIT_LOCAL = "SET LOCAL synchronous_commit = on"
FENCE_MESSAGE = "SELECT pg_logical_emit_message(true, 'dbmigrate', 'fence')"
# The next transaction id to be assigned: it moves only when some transaction writes.
# (txid_* rather than pg_current_snapshot(): it exists on every supported source version.)
NEXT_XID = "SELECT txid_snapshot_xmax(txid_current_snapshot()) AS xid"

# Fence. The previous value is read from the file ALTER SYSTEM writes, to restore it exactly.
AUTO_CONF_READ_ONLY = """
SELECT setting FROM pg_file_settings
WHERE name = 'default_transaction_read_only' AND sourcefile LIKE '%%postgresql.auto.conf'
ORDER BY seqno DESC LIMIT 1
"""
SET_READ_ONLY = "ALTER SYSTEM SET default_transaction_read_only = on"
RESET_READ_ONLY = "ALTER SYSTEM RESET default_transaction_read_only"
RELOAD = "SELECT pg_reload_conf()"
CLIENTS_IN_TRANSACTION = """
SELECT count(*) AS n FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> ALL(%s)
  AND xact_start IS NOT NULL
"""
TERMINATE_CLIENTS = """
SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> ALL(%s)
"""
CLIENTS_LEFT = """
SELECT count(*) AS n FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> ALL(%s)
"""
SEQUENCES = """
SELECT schemaname AS schema, sequencename AS name, last_value FROM pg_sequences
WHERE last_value IS NOT NULL AND schemaname NOT IN ('pg_catalog', 'information_schema')
"""

# --- target ---
SUBSCRIPTION = "SELECT oid, subenabled AS enabled FROM pg_subscription WHERE subname = %s"
NOT_READY_TABLES = """
SELECT count(*) AS n FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
WHERE s.subname = %s AND r.srsubstate NOT IN ('r', 's')
"""
# The initial copy's progress: tables of the subscription, and those whose copy is done
# (synchronised or ready); the bytes of the database it fills.
SYNC_PROGRESS = """
SELECT count(DISTINCT s.oid) AS subscriptions, count(r.srrelid) AS total,
       count(*) FILTER (WHERE r.srsubstate IN ('r', 's')) AS synced,
       pg_database_size(current_database()) AS bytes
FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
WHERE s.subname = %s
"""
SETVAL = """
SELECT setval(c.oid, %s, true) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'S'
"""
MATVIEWS = """
SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' ORDER BY c.oid
"""


def create_publication(name: str) -> sql.Composed:
    return sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(name))


def drop_publication(name: str) -> sql.Composed:
    return sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name))


def create_subscription(name: str, conninfo: str, publication: str, slot: str) -> sql.Composed:
    # The slot exists already (made on the source, so the operator owns its life cycle);
    # synchronous_commit=on makes the reported flush position mean "applied", which is what
    # the switchover waits for.
    return sql.SQL(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (create_slot = false, "
        "slot_name = {}, copy_data = true, synchronous_commit = 'on', enabled = true)"
    ).format(sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication),
             sql.Literal(slot))


def alter_subscription(name: str, clause: str) -> sql.Composed:
    assert clause in {"DISABLE", "ENABLE", "SET (slot_name = NONE)"}
    return sql.SQL("ALTER SUBSCRIPTION {} " + clause).format(sql.Identifier(name))


def drop_subscription(name: str) -> sql.Composed:
    return sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name))


def refresh_matview(schema: str, name: str) -> sql.Composed:
    return sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name))
