"""SQL of the streamed table copy (``stream.py``)."""

from __future__ import annotations

from psycopg import sql

EXPORT_SNAPSHOT = "SELECT pg_export_snapshot() AS snapshot"

# Tables whose rows we stream: ordinary tables (partitions included, their parents hold no
# rows), no extension members (pg_dump handles extension configuration tables), with the
# columns COPY can write (not generated). "binary" when every column type is built in: user
# types' OIDs differ between servers, and binary COPY of arrays/composites embeds them.
TABLES = """
SELECT n.nspname AS schema, c.relname AS name, pg_table_size(c.oid) AS bytes,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint AS blocks,
       array_agg(a.attname::text ORDER BY a.attnum) AS columns,
       bool_and(a.atttypid < 16384) AS binary
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attgenerated = ''
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
GROUP BY n.nspname, c.relname, c.oid
ORDER BY pg_table_size(c.oid) DESC
"""


def _fmt(binary: bool) -> sql.SQL:
    return sql.SQL("binary" if binary else "text")


def copy_out(schema: str, name: str, columns: list[str], binary: bool,
             first_block: int | None = None, end_block: int | None = None) -> sql.Composed:
    """All rows, or those in heap blocks [first_block, end_block) (a TID range scan).

    A whole table is the plain ``COPY table TO``: the same rows as ``SELECT ... FROM ONLY``
    (COPY TO never reads child tables), without a query to parse and plan, which for
    thousands of small tables was a sixth of the source's work."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    if first_block is None:
        return sql.SQL("COPY {} ({}) TO STDOUT (FORMAT {})").format(
            sql.Identifier(schema, name), cols, _fmt(binary))
    where = sql.SQL(" WHERE ctid >= {}::tid").format(sql.Literal(f"({first_block},0)"))
    if end_block is not None:
        where += sql.SQL(" AND ctid < {}::tid").format(sql.Literal(f"({end_block},0)"))
    return sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT (FORMAT {})").format(
        cols, sql.Identifier(schema, name), where, _fmt(binary))


def truncate(schema: str, name: str) -> sql.Composed:
    return sql.SQL("TRUNCATE ONLY {}").format(sql.Identifier(schema, name))


def copy_in(schema: str, name: str, columns: list[str], binary: bool, *, freeze: bool = True) -> sql.Composed:
    # FREEZE: the table was truncated in this transaction, so rows can be written frozen
    # (no later hint-bit and anti-wraparound rewrites of the whole copy).
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}{})").format(
        sql.Identifier(schema, name), cols, _fmt(binary), sql.SQL(", FREEZE" if freeze else ""))


def set_snapshot(snapshot: str) -> sql.Composed:
    return sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot))


def _quoted(s: str) -> str:
    """Inside double quotes every character of a pattern is literal; a quote is doubled."""
    return '"' + s.replace('"', '""') + '"'


# pg_dump resolves each pattern with a query of its own: 2000 patterns (one per table) took
# 1.3 s of a 2000-table schema dump that takes 0.5 s. One pattern per schema (an alternation
# of quoted names, outside quotes a pattern is a regular expression) takes one query. A
# single argument must stay under the kernel's 128 KiB.
_PATTERN_BYTES = 100_000


def patterns(tables: list[tuple[str, str]]) -> list[str]:
    """pg_dump table patterns matching exactly these (schema, name) tables, few of them."""
    by_schema: dict[str, list[str]] = {}
    for schema, name in tables:
        by_schema.setdefault(schema, []).append(_quoted(name))
    out: list[str] = []
    for schema, names in by_schema.items():
        chunk: list[str] = []
        size = 0
        for n in names:
            if chunk and size + len(n) + 1 > _PATTERN_BYTES:
                out.append(f"{_quoted(schema)}.({'|'.join(chunk)})")
                chunk, size = [], 0
            chunk.append(n)
            size += len(n) + 1
        out.append(f"{_quoted(schema)}.({'|'.join(chunk)})")
    return out


# Tables whose CREATE needs no other table (schema_plan.py): no inheritance parent, not a
# partition, not typed, no column (or array/domain element) of a relation's row type. The
# pre-data restore creates these side by side.
INDEPENDENT_TABLES = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT c.relispartition AND c.reloftype = 0
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
  AND NOT EXISTS (
      SELECT 1 FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_type e ON e.oid = t.typelem
      LEFT JOIN pg_type b ON b.oid = t.typbasetype
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        AND (t.typrelid <> 0 OR coalesce(e.typrelid, 0) <> 0 OR coalesce(b.typrelid, 0) <> 0))
"""
