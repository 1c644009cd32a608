"""Where a PostgreSQL server is and how to log in; driver-free so Job builders can use it.

Passwords never go on a command line (visible in ``ps``): command builders put them in the
environment (``PGPASSWORD``), which a Job fills from a Secret.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


def _quote(value: str) -> str:
    # libpq conninfo syntax: single-quote the value, backslash-escape quotes and backslashes.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class ConnInfo:
    host: str
    port: int
    user: str
    password: str
    dbname: str = "postgres"
    sslmode: str = "prefer"
    application_name: str = "dbmigrate"

    def db(self, dbname: str) -> ConnInfo:
        return replace(self, dbname=dbname)

    def conninfo(self, *, with_password: bool = True) -> str:
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "application_name": self.application_name,
        }
        if with_password:
            parts["password"] = self.password
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())

    def env(self) -> dict[str, str]:
        """libpq environment for client tools (password included, never in argv)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
            "PGSSLMODE": self.sslmode,
            "PGAPPNAME": self.application_name,
        }
