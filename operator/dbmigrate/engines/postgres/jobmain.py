"""What the copy Jobs run: `python -m dbmigrate.engines.postgres.jobmain copy-verify|schema`.

Steps, in order:
  1. Read both logins from the environment (the Job fills them from Secrets by reference:
     SOURCE_HOST/PORT/USER/PASSWORD, TARGET_HOST/PORT/USER/PASSWORD; passwords never on argv).
  2. Snapshot copy with the target version's client tools (resumable: databases already
     restored by an earlier attempt are kept, a half-restored one is redone).
  3. Verify (row counts, bounded checksums, sequences, object counts).
  4. Write a small JSON result to the termination message, which the operator reads from the
     pod's status: {"ok", "bytes", "seconds", "databases", "diff"}.
Exit codes: 0 verified, 2 verification found differences (not worth retrying), 1 anything else
(the Job's backoff retries it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ...redact import redact
from ..base import Progress
from .budget import SHARE
from .conninfo import ConnInfo
from .copy import CopyOptions, snapshot_copy
from .db import connect, fetch
from .verify import VerifyOptions, verify_globals

EXIT_DIFF = 2
TERMINATION_LOG = Path(os.environ.get("TERMINATION_LOG", "/dev/termination-log"))
_DATABASE_BYTES = (
    "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint AS bytes FROM pg_database "
    "WHERE NOT datistemplate AND datname <> '_dbmigrate'"
)


def conn_from_env(prefix: str, env: dict[str, str] | None = None) -> ConnInfo:
    e = os.environ if env is None else env
    missing = [k for k in ("HOST", "USER", "PASSWORD") if not e.get(f"{prefix}_{k}")]
    if missing:
        raise SystemExit(f"missing environment: {', '.join(prefix + '_' + k for k in missing)}")
    return ConnInfo(host=e[f"{prefix}_HOST"], port=int(e.get(f"{prefix}_PORT", "5432")),
                    user=e[f"{prefix}_USER"], password=e[f"{prefix}_PASSWORD"],
                    application_name="dbmigrate-copy")


def database_bytes(ci: ConnInfo) -> int:
    """Bytes held by the server's (non-template) databases: the operator's progress gauge."""
    with connect(ci) as conn:
        return int(fetch(conn, _DATABASE_BYTES)[0]["bytes"])


def _write_result(result: dict[str, Any]) -> None:
    text = json.dumps(result, separators=(",", ":"))[:4000]  # the kubelet keeps 4096 bytes
    with contextlib.suppress(OSError):  # not in a pod: stdout below is the record
        TERMINATION_LOG.write_text(text)
    print(text, flush=True)


def copy_verify(args: argparse.Namespace) -> int:
    source, target = conn_from_env("SOURCE"), conn_from_env("TARGET")
    started = time.monotonic()
    last = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 5 or p.current == "":
            last[0] = now
            print(json.dumps({"progress": p.to_status(), "current": p.current}), flush=True)

    opts = CopyOptions(workdir=Path(args.workdir), bindir=Path(args.bindir) if args.bindir else None,
                       jobs=args.jobs, source_share=args.source_share,
                       verify=VerifyOptions(checksum_rows=args.checksum_rows))
    # Each database is verified by the copy itself, against the snapshot it was copied from
    # (the source keeps serving writes); then roles and the list of databases.
    copied = snapshot_copy(source, target, opts, progress)
    diff = verify_globals(source, target)
    diff.extend(copied.diff)
    _write_result({"ok": diff.clean, "bytes": copied.bytes_total,
                   "seconds": round(time.monotonic() - started, 1),
                   "databases": len(copied.databases), "diff": diff.summary()})
    return 0 if diff.clean else EXIT_DIFF


def schema(args: argparse.Namespace) -> int:
    """Roles and every database's schema, no table data (an online execute's step 1)."""
    source, target = conn_from_env("SOURCE"), conn_from_env("TARGET")
    started = time.monotonic()
    opts = CopyOptions(workdir=Path(args.workdir), bindir=Path(args.bindir) if args.bindir else None,
                       jobs=args.jobs, schema_only=True, source_share=args.source_share)
    copied = snapshot_copy(source, target, opts)
    _write_result({"ok": True, "databases": len(copied.databases),
                   "seconds": round(time.monotonic() - started, 1)})
    return 0


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = 0.0
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share: give a number above 0, at most 1")
    return share


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dbmigrate-job")
    sub = ap.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("copy-verify", help="snapshot copy of every database, then verification")
    cv.add_argument("--workdir", default="/work", help="scratch space for the dumps")
    cv.add_argument("--bindir", default="", help="the target version's client tools (default: PATH)")
    cv.add_argument("--jobs", type=int, default=2, help="parallel pg_dump/pg_restore jobs")
    cv.add_argument("--checksum-rows", type=int, default=1_000_000,
                    help="checksum tables up to this many rows whole, sample larger ones")
    sc = sub.add_parser("schema", help="roles and schema of every database, no data")
    sc.add_argument("--workdir", default="/work")
    sc.add_argument("--bindir", default="")
    sc.add_argument("--jobs", type=int, default=2)
    for p in (cv, sc):
        p.add_argument("--source-share", type=_share, default=SHARE,
                       help="the share of the source's free connection slots the copy may take "
                            f"(0 < share <= 1, default {SHARE})")
    args = ap.parse_args(argv)
    try:
        return copy_verify(args) if args.command == "copy-verify" else schema(args)
    except SystemExit:
        raise
    except Exception as e:  # report what failed: no password (ConnInfo is not printed), no row value
        _write_result({"ok": False, "error": redact(f"{type(e).__name__}: {e}")[:1500]})
        return 1


if __name__ == "__main__":
    sys.exit(main())
