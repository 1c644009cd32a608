"""PostgreSQL engine: the only package that talks to PostgreSQL (psycopg 3 + client binaries).

Modules, in the order a migration uses them:
  conninfo   where a server is and how to log in (driver-free, also used to build Jobs)
  commands   the exact pg_dump / pg_restore / pg_dumpall / psql command lines (driver-free)
  inventory  what the source holds: version, databases, roles, extensions, tables, settings
  checks     pre-flight findings for a (source, target major) pair; incompat = curated table
  copy       snapshot copy: roles, then each database with the target's pg_dump/pg_restore
  verify     row counts, bounded checksums, sequences, object counts -> VerificationDiff
  logical    online switchover primitives: publication/slot/subscription, lag, fence, cleanup

This ``__init__`` imports nothing on purpose: code that only builds Jobs may import
``conninfo``/``commands`` without pulling in psycopg.
"""
