"""Curated incompatible changes between majors, from the release notes' "Migration to
Version N" sections (https://www.postgresql.org/docs/release/N.0/).

An entry applies when ``source major < since <= target major``. Its ``sql`` runs in every
source database (``per_database``) or once in the maintenance database, and returns one
row per offending object in a column named ``object``; no rows, no finding. Queries may
take one parameter, ``params``. Only changes a dump/restore or a logical copy can trip over
(or that silently change behaviour for the application) are listed; pg_upgrade-only issues
are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import Severity


@dataclass(frozen=True)
class Incompat:
    code: str
    since: int
    release: str
    severity: Severity
    message: str
    hint: str
    sql: str
    per_database: bool = True
    params: tuple[object, ...] = ()


def _notes(major: int) -> str:
    return f'PostgreSQL {major}.0 release notes, "Migration to Version {major}"'


# Settings that no longer exist: set in a configuration file they stop the new server from
# starting; set per role/database (pg_db_role_setting) they make the role/database restore fail.
_REMOVED_SETTING_SERVER = """
SELECT name || ' = ' || setting AS object FROM pg_settings
WHERE name = ANY(%s) AND source NOT IN ('default', 'override')
"""
_REMOVED_SETTING_ROLE_DB = """
SELECT coalesce('role ' || r.rolname, 'all roles') || ' in ' ||
       coalesce('database ' || d.datname, 'all databases') || ': ' || cfg AS object
FROM pg_db_role_setting s
LEFT JOIN pg_roles r ON r.oid = s.setrole
LEFT JOIN pg_database d ON d.oid = s.setdatabase,
LATERAL unnest(s.setconfig) AS cfg
WHERE split_part(cfg, '=', 1) = ANY(%s)
"""

# User views over statistics views whose columns were moved away.
_VIEW_USES_COLUMNS = """
SELECT DISTINCT v.oid::regclass::text || ' uses ' || a.attname AS object
FROM pg_depend d
JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = %s::regclass AND a.attname = ANY(%s) AND v.oid <> d.refobjid
"""

_16 = ["promote_trigger_file", "vacuum_defer_cleanup_age", "force_parallel_mode"]
_17 = ["old_snapshot_threshold", "db_user_namespace", "trace_recovery_messages"]

CATALOG: tuple[Incompat, ...] = (
    Incompat(
        "PG16_REMOVED_SETTING", 16, _notes(16), Severity.BLOCKER,
        "setting removed or renamed in 16 (promote_trigger_file, vacuum_defer_cleanup_age; "
        "force_parallel_mode became debug_parallel_query)",
        "remove it from the configuration (use debug_parallel_query instead of "
        "force_parallel_mode)",
        _REMOVED_SETTING_SERVER, per_database=False, params=(_16,)),
    Incompat(
        "PG16_REMOVED_SETTING_ROLE_DB", 16, _notes(16), Severity.BLOCKER,
        "role/database setting of a parameter removed in 16: restoring it fails",
        "ALTER ROLE/DATABASE ... RESET the parameter on the source before migrating",
        _REMOVED_SETTING_ROLE_DB, per_database=False, params=(_16,)),
    Incompat(
        "PG16_CREATEROLE_RESTRICTED", 16, _notes(16), Severity.WARNING,
        "16 restricts CREATEROLE: such a role can only alter, grant and drop roles it holds "
        "ADMIN OPTION on",
        "grant the role ADMIN OPTION on the roles it manages, or manage them as a superuser",
        "SELECT rolname AS object FROM pg_roles WHERE rolcreaterole AND NOT rolsuper "
        "AND rolname !~ '^pg_'", per_database=False),
    Incompat(
        "PG16_WALINSPECT_FUNCTIONS", 16, _notes(16), Severity.WARNING,
        "pg_walinspect lost pg_get_wal_records_info_till_end_of_wal() and "
        "pg_get_wal_stats_till_end_of_wal()",
        "call pg_get_wal_records_info()/pg_get_wal_stats() with an end LSN instead",
        "SELECT current_database() || '.' || extname AS object FROM pg_extension "
        "WHERE extname = 'pg_walinspect'"),
    Incompat(
        "PG17_REMOVED_SETTING", 17, _notes(17), Severity.BLOCKER,
        "setting removed in 17 (old_snapshot_threshold, db_user_namespace, "
        "trace_recovery_messages)",
        "remove it from the configuration",
        _REMOVED_SETTING_SERVER, per_database=False, params=(_17,)),
    Incompat(
        "PG17_REMOVED_SETTING_ROLE_DB", 17, _notes(17), Severity.BLOCKER,
        "role/database setting of a parameter removed in 17: restoring it fails",
        "ALTER ROLE/DATABASE ... RESET the parameter on the source before migrating",
        _REMOVED_SETTING_ROLE_DB, per_database=False, params=(_17,)),
    Incompat(
        "PG17_ADMINPACK_REMOVED", 17, _notes(17), Severity.BLOCKER,
        "the adminpack extension was removed in 17",
        "DROP EXTENSION adminpack on the source (its functions have no replacement in core)",
        "SELECT current_database() || '.adminpack' AS object FROM pg_extension "
        "WHERE extname = 'adminpack'"),
    Incompat(
        "PG17_MAINTENANCE_SEARCH_PATH", 17, _notes(17), Severity.WARNING,
        "17 runs index builds and REFRESH MATERIALIZED VIEW with search_path = pg_catalog, "
        "pg_temp: this function, used by an index or materialized view, has no search_path "
        "of its own and may fail to find unqualified objects during the restore",
        "ALTER FUNCTION ... SET search_path = ... or schema-qualify the names it uses",
        """
SELECT DISTINCT p.oid::regprocedure::text AS object
FROM pg_depend d
JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_class ic ON d.classid = 'pg_class'::regclass AND ic.oid = d.objid
LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
LEFT JOIN pg_class mv ON mv.oid = r.ev_class
WHERE (ic.relkind = 'i' OR mv.relkind = 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.prolang NOT IN (SELECT oid FROM pg_language WHERE lanname IN ('c', 'internal'))
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) cfg WHERE cfg LIKE 'search_path=%%')
"""),
    Incompat(
        "PG17_BGWRITER_COLUMNS_MOVED", 17, _notes(17), Severity.BLOCKER,
        "this view reads pg_stat_bgwriter columns that 17 moved to pg_stat_checkpointer "
        "(or removed): it cannot be restored",
        "rewrite the view over pg_stat_checkpointer / pg_stat_io",
        _VIEW_USES_COLUMNS, params=("pg_catalog.pg_stat_bgwriter", [
            "checkpoints_timed", "checkpoints_req", "checkpoint_write_time",
            "checkpoint_sync_time", "buffers_checkpoint", "buffers_backend",
            "buffers_backend_fsync"])),
    Incompat(
        "PG18_WAL_STATS_COLUMNS_MOVED", 18, _notes(18), Severity.BLOCKER,
        "this view reads pg_stat_wal columns that 18 moved to pg_stat_io: it cannot be restored",
        "rewrite the view over pg_stat_io",
        _VIEW_USES_COLUMNS, params=("pg_catalog.pg_stat_wal", [
            "wal_write", "wal_sync", "wal_write_time", "wal_sync_time"])),
    Incompat(
        "PG18_MD5_PASSWORD_DEPRECATED", 18, _notes(18), Severity.WARNING,
        "MD5 password authentication is deprecated in 18 (a warning at every password "
        "change; removal planned): this role has an MD5 password",
        "set password_encryption = 'scram-sha-256' and change the role's password",
        "SELECT rolname AS object FROM pg_authid WHERE rolpassword LIKE 'md5%%'",
        per_database=False),
    Incompat(
        "PG18_UNLOGGED_PARTITIONED", 18, _notes(18), Severity.BLOCKER,
        "18 disallows unlogged partitioned tables: CREATE UNLOGGED TABLE ... PARTITION BY "
        "fails in the restore",
        "ALTER TABLE ... SET LOGGED on the partitioned table (it holds no data itself)",
        "SELECT oid::regclass::text AS object FROM pg_class WHERE relkind = 'p' "
        "AND relpersistence = 'u'"),
    Incompat(
        "PG18_VACUUM_INHERITANCE", 18, _notes(18), Severity.INFO,
        "18's VACUUM and ANALYZE also process inheritance children of this parent",
        "use VACUUM/ANALYZE ONLY to keep the old behaviour",
        "SELECT DISTINCT i.inhparent::regclass::text AS object FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhparent WHERE c.relkind = 'r'"),
    Incompat(
        "PG18_FTS_COLLATION_PROVIDER", 18, _notes(18), Severity.WARNING,
        "18's full text search parses with the database's collation provider (ICU here), "
        "not libc: stored tsvector values may differ from freshly computed ones",
        "recompute stored tsvector columns after the migration (UPDATE ... SET col = "
        "to_tsvector(...))",
        """
SELECT DISTINCT a.attrelid::regclass::text || '.' || a.attname AS object
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.atttypid = 'tsvector'::regtype AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = '' AND c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (SELECT datlocprovider FROM pg_database WHERE datname = current_database()) <> 'c'
"""),
)


def applicable(source_major: int, target_major: int) -> list[Incompat]:
    return [e for e in CATALOG if source_major < e.since <= target_major]
