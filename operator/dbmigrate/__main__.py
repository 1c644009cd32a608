"""`python -m dbmigrate`: run the operator.

Flags mirror what the Helm chart passes; every flag has a sane default for a local run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import Config, ConfigError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dbmigrate", description="Run the dbmigrate operator.")
    ap.add_argument("-n", "--namespace", action="append", default=[],
                    help="watch only this namespace (repeatable); default: all namespaces")
    ap.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                    help="kopf health endpoint URL, or '' to disable (default: %(default)s)")
    ap.add_argument("--peering", default="",
                    help="kopf peering name for HA (standby replicas); default: standalone")
    ap.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    try:
        cfg = Config.from_env()
    except ConfigError as e:
        print(f"dbmigrate: configuration error: {e}", file=sys.stderr)
        return 2

    import kopf  # after config validation, so a bad setting fails fast and clearly

    from . import handlers  # registers the handlers

    # Watching a list of namespaces: no cluster-wide scanning (which would need cluster-wide
    # list permissions the per-namespace Roles do not grant, and only delays the start).
    handlers.SCAN_CLUSTER = not args.namespace

    kopf.configure(verbose=args.verbose,
                   log_format=kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL)
    asyncio.run(kopf.operator(
        standalone=not args.peering,
        peering_name=args.peering or None,
        priority=args.priority,
        clusterwide=not args.namespace,
        namespaces=list(args.namespace),
        liveness_endpoint=args.liveness or None,
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
