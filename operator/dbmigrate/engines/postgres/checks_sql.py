"""Catalog queries for the pre-flight checks (per source database unless noted)."""

# User columns whose type stores OIDs: the values are dumped as names and re-resolved.
REG_COLUMNS = """
SELECT c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       AS object
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND a.atttypid IN (
    'regproc'::regtype, 'regprocedure'::regtype, 'regoper'::regtype, 'regoperator'::regtype,
    'regclass'::regtype, 'regtype'::regtype, 'regconfig'::regtype, 'regdictionary'::regtype,
    'regnamespace'::regtype, 'regrole'::regtype, 'regcollation'::regtype)
ORDER BY 1
"""

# Columns and user-defined collations that need ICU.
ICU_OBJECTS = """
SELECT 'collation ' || cl.oid::regcollation::text AS object
FROM pg_collation cl JOIN pg_namespace n ON n.oid = cl.collnamespace
WHERE cl.collprovider = 'i' AND n.nspname <> 'pg_catalog'
UNION
SELECT 'column ' || c.oid::regclass::text || '.' || a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_collation cl ON cl.oid = a.attcollation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE cl.collprovider = 'i' AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""

# Replication slots already used on the source (server-wide).
SLOTS_USED = "SELECT count(*) AS n FROM pg_replication_slots"
SENDERS_USED = "SELECT count(*) AS n FROM pg_stat_replication"

# Login roles whose password is stored as an MD5 hash (server-wide; needs a superuser).
MD5_LOGIN_ROLES = "SELECT rolname AS object FROM pg_authid WHERE rolcanlogin AND rolpassword LIKE 'md5%' ORDER BY 1"

# --- target capabilities (run on the target server) ---
# How the target authenticates TCP connections (pg_hba.conf; readable by a superuser).
TARGET_HBA_METHODS = "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type <> 'local' AND error IS NULL"
TARGET_EXTENSIONS = "SELECT name, version FROM pg_available_extension_versions"
# Without ICU, 16 still defines the 'unicode' collation; only ICU builds import und-x-icu.
TARGET_ICU = "SELECT count(*) > 0 AS icu FROM pg_collation WHERE collname = 'und-x-icu'"
TARGET_LOCALES = "SELECT DISTINCT collcollate AS locale FROM pg_collation WHERE collprovider = 'c'"
TARGET_VERSION = "SELECT current_setting('server_version_num')::int / 10000 AS major"
