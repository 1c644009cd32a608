"""Real PostgreSQL servers on loopback for the dataplane, integration and e2e tiers.

Steps of ``start_server(major)``:
  1. make sure ``hack/postgres.sh`` installed the major (once per process, stamp-fast when warm);
  2. initdb a template data directory once per (process, major) - scram auth, UTF8, C.UTF-8;
  3. copy the template into a fresh temporary directory owned by the server user;
  4. start ``postgres`` as that user on a free 127.0.0.1 port with test-friendly settings
     (wal_level=logical, slots/senders for logical replication, small memory, fsync off);
  5. wait until it accepts a password login, hand back a ``PgServer``; ``stop()`` shuts it
     down (fast mode, then kill) and deletes the directory.

PostgreSQL refuses to run as root, so servers run as ``$DBMIGRATE_PG_USER`` (default
``postgres``), while client tools and the tests themselves run as the current user over TCP.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from dbmigrate.engines.postgres.conninfo import ConnInfo

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("DBMIGRATE_CACHE", str(Path.home() / ".cache" / "dbmigrate")))
PG_USER = os.environ.get("DBMIGRATE_PG_USER", "postgres")
SUPERUSER = "postgres"
MAJORS = (15, 16, 17, 18)

# Settings every test server gets. Durability is irrelevant for throw-away servers; logical
# replication needs wal_level=logical and spare slots/senders (one per database + sync workers).
BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "32",
    "max_wal_senders": "32",
    "max_worker_processes": "32",
    "max_logical_replication_workers": "16",
    "max_sync_workers_per_subscription": "2",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "password_encryption": "'scram-sha-256'",
    "unix_socket_permissions": "0700",
}

_installed: set[int] = set()
_running: set[PgServer] = set()
_templates: dict[int, Path] = {}


def bindir(major: int) -> Path:
    """Install ``major`` if needed and return its uniform bin directory."""
    if major not in _installed:
        subprocess.run([str(REPO / "hack" / "postgres.sh"), str(major)], check=True,
                       stdout=subprocess.DEVNULL)
        _installed.add(major)
    return CACHE / "pg" / str(major) / "bin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_server_user(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, user=PG_USER, check=True, text=True, capture_output=True,
                          **kw)  # type: ignore[call-overload, no-any-return]


def _chown_tree(path: Path) -> None:
    pw = pwd.getpwnam(PG_USER)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _template(major: int, password: str) -> Path:
    """One initdb per process and major; later servers copy it (much faster than initdb)."""
    if major in _templates:
        return _templates[major]
    base = Path(tempfile.mkdtemp(prefix=f"dbmigrate-pgtpl{major}-"))
    data = base / "data"
    pwfile = base / "pw"
    pwfile.write_text(password + "\n")
    _chown_tree(base)
    _run_as_server_user([
        str(bindir(major) / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
        "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
        "--locale=C.UTF-8", "--no-sync", "--no-instructions",
    ])
    pwfile.unlink()
    _templates[major] = data
    return data


@atexit.register
def _cleanup() -> None:
    """Servers run in their own session (a Ctrl-C to the tests must not kill them half-way):
    stop whatever a crashed caller left running, then drop the templates."""
    for server in list(_running):
        server.stop()
    for data in _templates.values():
        shutil.rmtree(data.parent, ignore_errors=True)


# Every server of a process shares the template's superuser password; it is random per process.
_PASSWORD = secrets.token_urlsafe(18)


@dataclass(eq=False)
class PgServer:
    major: int
    bindir: Path
    port: int
    datadir: Path
    proc: subprocess.Popen[bytes]
    version: str = ""
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    password: str = _PASSWORD
    _stopped: bool = field(default=False, repr=False)

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        return ConnInfo(self.host, self.port, user or self.user, password or self.password,
                        dbname).conninfo()

    def ci(self, dbname: str = "postgres") -> ConnInfo:
        return ConnInfo(self.host, self.port, self.user, self.password, dbname)

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(dbname), autocommit=autocommit)

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run one or more statements (simple protocol); return the last statement's rows."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql.encode(), prepare=False)
            rows: list[tuple[object, ...]] = []
            while True:
                if cur.description is not None:
                    rows = cur.fetchall()
                if not cur.nextset():
                    break
            return rows

    def scalar(self, sql: str, dbname: str = "postgres") -> object:
        rows = self.execute(sql, dbname)
        return rows[0][0] if rows else None

    def restart(self, **settings: str) -> None:
        """Restart with extra settings (e.g. wal_level=replica) on the same port and data."""
        self._shutdown()
        conf = self.datadir / "postgresql.auto.conf"
        with conf.open("a") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.proc = _launch(self.bindir, self.datadir)
        _wait_ready(self)

    def _shutdown(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: abort sessions, checkpoint
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server and, unless ``remove`` is false, delete its files (the caller then
        deletes ``datadir.parent``)."""
        if self._stopped:
            return
        self._stopped = True
        _running.discard(self)
        self._shutdown()
        if remove:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def log(self) -> str:
        p = self.datadir / "server.log"
        return p.read_text(errors="replace") if p.exists() else ""


def _launch(bdir: Path, data: Path) -> subprocess.Popen[bytes]:
    logf = open(data / "server.log", "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen([str(bdir / "postgres"), "-D", str(data)], user=PG_USER,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
    finally:
        logf.close()


def _wait_ready(server: PgServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"postgres {server.major} exited:\n{server.log()[-3000:]}")
        try:
            with psycopg.connect(server.dsn(), connect_timeout=2) as conn:
                server.version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


StartServer = Callable[..., PgServer]


def start_server(major: int, settings: dict[str, str] | None = None) -> PgServer:
    """Start a fresh server of ``major``; the caller must ``stop()`` it."""
    bdir = bindir(major)
    tpl = _template(major, _PASSWORD)
    base = Path(tempfile.mkdtemp(prefix=f"dbmigrate-pg{major}-"))
    data = base / "data"
    shutil.copytree(tpl, data, symlinks=True)
    port = free_port()
    conf = {**BASE_SETTINGS, "port": str(port), "unix_socket_directories": f"'{base}'",
            **(settings or {})}
    with (data / "postgresql.auto.conf").open("a") as f:
        for k, v in conf.items():
            f.write(f"{k} = {v}\n")
    _chown_tree(base)
    os.chmod(data, 0o700)
    server = PgServer(major=major, bindir=bdir, port=port, datadir=data, proc=_launch(bdir, data))
    _running.add(server)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


_QUALIFIER = re.compile(r'(?<![\w."])[a-z_][a-z0-9_]*\.(?=[a-z_"])')


def schema_dump(server: PgServer, dbname: str, bindir: Path | None = None) -> str:
    """``pg_dump --schema-only`` (with ``bindir``'s pg_dump, default the server's own), with
    what legitimately differs between two servers removed: comments, SET lines, blank lines
    and the per-dump random ``\\restrict`` key."""
    tool = (bindir or server.bindir) / "pg_dump"
    env = {**ConnInfo(server.host, server.port, server.user, server.password, dbname).env(),
           "PATH": os.environ.get("PATH", "")}
    out = subprocess.run([str(tool), "--schema-only", "--no-sync"], env=env, check=True,
                         capture_output=True, text=True).stdout
    keep = []
    in_view = False
    for line in out.splitlines():
        if not line.strip() or line.startswith(("--", "SET ", "SELECT pg_catalog.set_config",
                                                 "\\restrict", "\\unrestrict")):
            continue
        if "SET (pg_attver=" in line:
            continue  # Debian 17.12's per-column stamp, unknown to 18 (see engines/postgres/predata.py)
        if line.startswith(("CREATE VIEW", "CREATE MATERIALIZED VIEW")):
            in_view = True
        elif in_view:
            # Views are deparsed by the server: 16+ no longer qualifies columns when the query
            # has one relation ("orders.placed" -> "placed"). Drop qualifiers on both sides.
            line = _QUALIFIER.sub("", line)
        if line.rstrip().endswith(";"):
            in_view = False
        keep.append(line)
    return "\n".join(keep)


def fingerprint(server: PgServer) -> dict[str, object]:
    """Everything a migration must leave as it was on a source it aborted on: settings (and
    what ALTER SYSTEM wrote), roles, replication slots, and per database its publications,
    schema and table contents."""
    fp: dict[str, object] = {
        "settings": server.execute("SELECT name, setting FROM pg_settings ORDER BY name"),
        "auto_conf": server.execute(
            "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf' ORDER BY name"),
        "roles": server.execute("SELECT * FROM pg_authid ORDER BY rolname"),
        "slots": server.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1"),
    }
    dbs = [str(r[0]) for r in server.execute(
        "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")]
    fp["databases"] = dbs
    for db in dbs:
        fp[f"{db}:publications"] = server.execute("SELECT pubname FROM pg_publication ORDER BY 1", db)
        fp[f"{db}:schema"] = schema_dump(server, db)
        tables = server.execute(
            "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1", db)
        fp[f"{db}:data"] = [
            (t[0], server.scalar(f"SELECT md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))) "
                                 f"FROM {t[0]} x", db))
            for t in tables]
    return fp
