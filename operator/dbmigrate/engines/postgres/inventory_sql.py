"""Catalog queries for the inventory. Parameters only; no identifiers are composed here."""

SERVER = """
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num
"""

SETTINGS = """
SELECT name, setting FROM pg_settings
WHERE name = ANY(%s)
"""

DATABASES = """
SELECT d.datname AS name, pg_database_size(d.oid) AS bytes, pg_get_userbyid(d.datdba) AS owner,
       pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, d.datctype AS ctype,
       d.datlocprovider::text AS locale_provider, d.daticulocale AS icu_locale
FROM pg_database d
WHERE NOT d.datistemplate AND d.datallowconn
ORDER BY d.datname
"""

# 17 renamed daticulocale to datlocale.
DATABASES_17 = DATABASES.replace("d.daticulocale", "d.datlocale")

ROLES = """
SELECT rolname AS name, rolsuper AS superuser, rolcanlogin AS login,
       rolreplication AS replication, rolcreaterole AS createrole
FROM pg_roles
WHERE rolname !~ '^pg_'
ORDER BY rolname
"""

EXTENSIONS = """
SELECT extname AS name, extversion AS version FROM pg_extension ORDER BY extname
"""

# Ordinary and partitioned tables, materialized views' storage excluded (they are rebuilt).
TABLES = """
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       c.relpersistence::text AS persistence, c.relreplident::text AS replica_identity,
       pg_table_size(c.oid) AS bytes, GREATEST(c.reltuples, 0)::bigint AS rows_estimate,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       c.relispartition AS is_partition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

LARGE_OBJECTS = "SELECT count(*) AS n FROM pg_largeobject_metadata"

# The slots a new client session may take: max_connections less those reserved for superusers
# (and, 16+, for pg_use_reserved_connections), less the client sessions open now. A login
# without pg_read_all_stats sees backend_type NULL in other roles' rows, but their usesysid:
# those count too (with the odd background worker that has a role: too many is the safe side).
# Auxiliary processes (checkpointer, ...) have no role.
CONNECTION_SLOTS = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend'
           OR (backend_type IS NULL AND usesysid IS NOT NULL))::int AS in_use
"""
