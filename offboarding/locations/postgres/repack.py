"""Online compaction with pg_repack (Debian's postgresql-15-repack): each table copied into
new files while it stays writable (triggers replay the writes made meanwhile), then swapped
in under a brief exclusive lock; the old files, with the deleted rows' bytes, are unlinked.

The extension must be installable in the database (CREATE EXTENSION pg_repack, a superuser's
or the database owner's step, once); the `pg_repack` client must match the server's major
version. A table needs a primary key or a unique index on NOT NULL columns: one without is
refused with its name, and can be rewritten with VACUUM FULL in a window instead.
"""

from __future__ import annotations

import glob
import shutil
import subprocess

import psycopg
from psycopg.conninfo import conninfo_to_dict

from offboarding.core.errors import ConfigurationError, DestructionIncompleteError
from offboarding.locations.postgres.catalog import ident

__all__ = ["repack"]

_ENVIRONMENT = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
                "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}  # fmt: skip


def _client() -> str:
    found = shutil.which("pg_repack") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_repack"), reverse=True)), None
    )
    if found is None:
        raise ConfigurationError(
            "OFFBOARD_COMPACTION_METHOD=pg_repack, but no pg_repack client is installed: "
            "install Debian's postgresql-15-repack (the server's major version), or use "
            "vacuum-full in a window"
        )
    return found


def repack(dsn: str, tables: list[str]) -> list[str]:
    """Rewrite each table online with pg_repack (no ordering: a plain copy); then CHECKPOINT
    and a WAL switch, as `residue.compact` does. Returns the tables rewritten."""
    client = _client()
    env = {variable: str(value) for key, value in conninfo_to_dict(dsn).items()
           if (variable := _ENVIRONMENT.get(key)) and value is not None}  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_repack")
        done = []
        for table in sorted(set(tables)):
            result = subprocess.run(
                [client, "--no-order", "--wait-timeout=60", "--no-kill-backend",
                 f"--table={ident(table).as_string()}"],
                env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise DestructionIncompleteError(
                    f"pg_repack could not rewrite {table} ({result.returncode}): "
                    f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}"
                    "; nothing of it changed. A table without a primary key needs vacuum-full"
                )
            done.append(table)
        conn.execute("CHECKPOINT")
        conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
    return done
