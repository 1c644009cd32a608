"""SQL of the verification; identifiers are composed with psycopg.sql, never formatted."""

from __future__ import annotations

from psycopg import sql

_USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"


def _not_ext(classid: str, oid: str) -> str:
    # Objects that belong to an extension are the extension's business (its version may differ).
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{classid}'::regclass "
            f"AND e.objid = {oid} AND e.deptype = 'e')")


TABLES = f"""
SELECT n.nspname AS schema, c.relname AS name, GREATEST(c.reltuples, 0)::bigint AS estimate,
       ARRAY(SELECT a.attname::text
             FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS pk,
       ARRAY(SELECT a.attcollation <> 0
             FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS pk_collatable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND {_USER_NS}
  AND {_not_ext('pg_class', 'c.oid')}
ORDER BY 1, 2
"""

SEQUENCES = """
SELECT schemaname AS schema, sequencename AS name, last_value FROM pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""

OBJECT_COUNTS = f"""
SELECT 'tables' AS kind, count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND {_USER_NS} AND {_not_ext('pg_class', 'c.oid')}
UNION ALL SELECT 'views', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'v' AND {_USER_NS} AND {_not_ext('pg_class', 'c.oid')}
UNION ALL SELECT 'materialized views', count(*) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND {_USER_NS}
UNION ALL SELECT 'sequences', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'S' AND {_USER_NS} AND {_not_ext('pg_class', 'c.oid')}
UNION ALL SELECT 'indexes', count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('i', 'I') AND {_USER_NS} AND {_not_ext('pg_class', 'c.oid')}
  AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_depend e ON e.objid = x.indrelid
                  AND e.deptype = 'e' WHERE x.indexrelid = c.oid)
UNION ALL SELECT 'functions', count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE {_USER_NS} AND {_not_ext('pg_proc', 'p.oid')}
UNION ALL SELECT 'constraints', count(*) FROM pg_constraint k
  JOIN pg_namespace n ON n.oid = k.connamespace
  -- 18 records NOT NULL as constraints (contype n); older majors keep them in pg_attribute.
  WHERE k.contype <> 'n' AND {_USER_NS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = k.conrelid AND e.deptype = 'e')
UNION ALL SELECT 'triggers', count(*) FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL SELECT 'types', count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  LEFT JOIN pg_class c ON c.oid = t.typrelid
  WHERE {_USER_NS} AND (t.typrelid = 0 OR c.relkind = 'c') AND t.typcategory <> 'A'
  AND {_not_ext('pg_type', 't.oid')}
UNION ALL SELECT 'schemas', count(*) FROM pg_namespace n WHERE {_USER_NS} AND n.nspname !~ '^pg_'
  AND {_not_ext('pg_namespace', 'n.oid')}
UNION ALL SELECT 'extensions', count(*) FROM pg_extension
UNION ALL SELECT 'large objects', count(*) FROM pg_largeobject_metadata
"""

DATABASES = "SELECT datname AS name FROM pg_database WHERE NOT datistemplate ORDER BY 1"
ROLES = "SELECT rolname AS name FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1"


def row_count(schema: str, name: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) AS n FROM ONLY {}").format(sql.Identifier(schema, name))


def checksum(schema: str, name: str, pk: list[tuple[str, bool]], limit: int | None) -> sql.Composed:
    """md5 over the rows' md5s in a stable order. With ``limit``: only the first rows by primary
    key (text keys compared in the "C" collation, so both servers pick the same rows whatever
    their libc), or, without a key, the ``limit`` smallest row hashes (a full scan, bounded memory)."""
    table = sql.Identifier(schema, name)
    if limit is None:
        inner = sql.SQL("SELECT md5(t::text) AS h FROM ONLY {} t").format(table)
    elif pk:
        order = sql.SQL(", ").join(
            sql.SQL('{} COLLATE "C"').format(sql.Identifier(c)) if collatable
            else sql.Identifier(c) for c, collatable in pk)
        inner = sql.SQL("SELECT md5(t::text) AS h FROM ONLY {} t ORDER BY {} LIMIT {}").format(
            table, order, sql.Literal(limit))
    else:
        inner = sql.SQL("SELECT md5(t::text) AS h FROM ONLY {} t ORDER BY 1 LIMIT {}").format(
            table, sql.Literal(limit))
    return sql.SQL("SELECT md5(string_agg(h, '' ORDER BY h COLLATE \"C\")) AS sum FROM ({}) s").format(inner)
