"""The exact command lines the copy runs (in-process here, in a Job in the cluster).

Every command uses the TARGET version's client binaries: a newer pg_dump reads any older
server and writes what the newer server restores. Connection details travel in libpq
environment variables (``Command.env``), so argv holds no secret. ``bindir`` is the directory
of the binaries (``None``: rely on ``PATH``, as in a container image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .conninfo import ConnInfo

# Session settings for the restore's connections: it is a bulk load into a fresh server, so
# commits need not wait for the disk and index builds may use more memory. Passed via PGOPTIONS.
RESTORE_PGOPTIONS = (
    "-c synchronous_commit=off -c maintenance_work_mem=256MB -c work_mem=64MB"
)


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        """For logs and docs: the command with its non-secret environment."""
        shown = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()) if k != "PGPASSWORD")
        return f"{shown} {' '.join(self.argv)}".strip()


def _bin(bindir: Path | None, name: str) -> str:
    return str(bindir / name) if bindir else name


def dumpall_roles(bindir: Path | None, source: ConnInfo, out: Path) -> Command:
    """Roles, memberships and role settings (no tablespaces, no data)."""
    return Command(
        [_bin(bindir, "pg_dumpall"), "--roles-only", f"--file={out}"],
        source.env(),
    )


def dump_db(bindir: Path | None, source: ConnInfo, dbname: str, outdir: Path, jobs: int,
            *, schema_only: bool = False, snapshot: str | None = None,
            exclude_data: list[str] | None = None) -> Command:
    """Directory format, parallel, uncompressed (the dump is read back at once, locally:
    compression would only cost CPU), no fsync of the dump files (a lost dump is redone).
    ``snapshot``: dump as of an exported snapshot; ``exclude_data``: table patterns whose
    rows are copied another way (stream.py)."""
    argv = [_bin(bindir, "pg_dump"), "--format=directory", f"--jobs={jobs}", "--compress=0",
            "--no-sync", "--create", "--verbose", f"--file={outdir}"]
    if schema_only:
        argv.append("--schema-only")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    argv += [f"--exclude-table-data={p}" for p in exclude_data or []]
    argv.append(f"--dbname={dbname}")
    return Command(argv, source.db(dbname).env())


def restore_db(bindir: Path | None, target: ConnInfo, indir: Path, jobs: int,
               *, maintenance_db: str = "template1") -> Command:
    """``--create``: the database is created with the source's encoding, locale, owner, ACL
    and settings; pg_restore connects to ``maintenance_db`` to issue CREATE DATABASE."""
    argv = [_bin(bindir, "pg_restore"), "--create", "--exit-on-error", f"--jobs={jobs}",
            "--verbose", f"--dbname={maintenance_db}", str(indir)]
    env = target.db(maintenance_db).env()
    env["PGOPTIONS"] = RESTORE_PGOPTIONS
    return Command(argv, env)


def restore_pre_data_script(bindir: Path | None, indir: Path, out: Path) -> Command:
    """The pre-data section (CREATE DATABASE with the source's locale, owner, ACL and settings,
    then the schema without indexes and constraints) as a SQL script: no connection needed.
    It is filtered (``predata.filter_script``) before it runs, see there why."""
    return Command([_bin(bindir, "pg_restore"), "--create", "--section=pre-data",
                    f"--file={out}", str(indir)])


def psql_script(bindir: Path | None, target: ConnInfo, script: Path, dbname: str,
                *, single_transaction: bool = False) -> Command:
    """Run a SQL script, stopping at the first error."""
    env = target.db(dbname).env()
    env["PGOPTIONS"] = RESTORE_PGOPTIONS
    argv = [_bin(bindir, "psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
            f"--file={script}", f"--dbname={dbname}"]
    if single_transaction:
        argv.insert(-2, "--single-transaction")
    return Command(argv, env)


def restore_data(bindir: Path | None, target: ConnInfo, indir: Path, dbname: str, jobs: int,
                 *, listfile: Path | None = None) -> Command:
    """Table data, then indexes, constraints and triggers, in parallel, into ``dbname``;
    only the entries of ``listfile`` (``pg_restore --list`` output, edited) if given."""
    argv = [_bin(bindir, "pg_restore"), "--section=data", "--section=post-data",
            "--exit-on-error", f"--jobs={jobs}", "--verbose", f"--dbname={dbname}", str(indir)]
    if listfile is not None:
        argv.insert(-1, f"--use-list={listfile}")
    env = target.db(dbname).env()
    env["PGOPTIONS"] = RESTORE_PGOPTIONS
    return Command(argv, env)


def toc_list(bindir: Path | None, indir: Path, out: Path) -> Command:
    """The archive's table of contents (``pg_restore --list``): one line per entry."""
    return Command([_bin(bindir, "pg_restore"), "--list", f"--file={out}", str(indir)])


def psql_file(bindir: Path | None, target: ConnInfo, script: Path, dbname: str) -> Command:
    """Run a SQL script in one transaction, stopping at the first error."""
    return Command(
        [_bin(bindir, "psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
         "--single-transaction", f"--file={script}", f"--dbname={dbname}"],
        target.db(dbname).env(),
    )


def copy_out(bindir: Path | None, source: ConnInfo, dbname: str, snapshot: str, copy_sql: str) -> Command:
    """Rows of one table to stdout, as of the copy's exported snapshot (stream.py)."""
    return Command(
        [_bin(bindir, "psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
         "--command=BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
         f"--command=SET TRANSACTION SNAPSHOT '{snapshot}'",
         f"--command={copy_sql}", "--command=COMMIT", f"--dbname={dbname}"],
        source.db(dbname).env(),
    )


def copy_in(bindir: Path | None, target: ConnInfo, dbname: str, truncate_sql: str | None,
            copy_sql: str, *, toast_compression: str | None = None) -> Command:
    """Rows from stdin into one table, in one transaction that first empties it (a whole
    table) or not (a piece of a table loaded side by side with its other pieces)."""
    env = target.db(dbname).env()
    env["PGOPTIONS"] = RESTORE_PGOPTIONS + (
        f" -c default_toast_compression={toast_compression}" if toast_compression else "")
    steps = ["--command=BEGIN", f"--command={truncate_sql}"] if truncate_sql else ["--command=BEGIN"]
    return Command(
        [_bin(bindir, "psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", *steps,
         f"--command={copy_sql}", "--command=COMMIT", f"--dbname={dbname}"],
        env,
    )
