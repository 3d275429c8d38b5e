"""Objects named after a tenant in PostgreSQL (relational/named.py says which and why): the
candidates read from the catalogue, and how each declared one is dropped. Sequences a table's
column owns (serial, identity) belong to that table; those in the tenant's own schema go
with the schema."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.errors import DestructionIncompleteError
from offboarding.core.names import qualified, split_qualified
from offboarding.datamap.systems import TenantObject
from offboarding.locations.relational.named import NamedObject, match_named, to_drop

__all__ = ["drop_named", "find_named"]

_CANDIDATES = """
SELECT 'sequence', n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT 'role', '', rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'
UNION ALL
SELECT 'publication', '', pubname FROM pg_publication
ORDER BY 1, 2, 3
"""
_DROP = {"sequence": "DROP SEQUENCE IF EXISTS {}", "role": "DROP ROLE IF EXISTS {}",
         "publication": "DROP PUBLICATION IF EXISTS {}"}  # fmt: skip


def find_named(
    conn: psycopg.Connection[Any], tenant: str, declared: list[TenantObject], own_schema: str
) -> list[NamedObject]:
    """The tenant's named sequences, roles and publications (outside its own schema)."""
    candidates = [
        (str(kind), qualified(schema, name) if schema else str(name), str(name))
        for kind, schema, name in conn.execute(_CANDIDATES)
        if schema != own_schema
    ]
    return match_named(candidates, tenant, declared)


def drop_named(conn: psycopg.Connection[Any], found: list[NamedObject]) -> list[str]:
    """Drop each object the data map says to drop; the names dropped."""
    dropped = []
    for obj in to_drop(found):
        name = (
            sql.Identifier(*split_qualified(obj.name))
            if obj.kind == "sequence"
            else sql.Identifier(obj.name)
        )
        try:
            with conn.transaction():
                conn.execute(sql.SQL(_DROP[obj.kind]).format(name))
        except psycopg.errors.Error as error:
            raise DestructionIncompleteError(
                f"{obj.describe()} could not be dropped: {str(error).strip().splitlines()[0]} "
                "(a role that owns objects or holds privileges must be cleared first, e.g. "
                "REASSIGN OWNED and DROP OWNED); the tenant's rows are already gone: settle "
                "it, then rerun the destruction"
            ) from None
        dropped.append(obj.describe())
    return dropped
