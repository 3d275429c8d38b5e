"""Database objects named after a tenant: a sequence a trigger made for its per-account
numbering, a role, a publication. They hold no rows, but they are the tenant's (a sequence's
value says how many invoices it issued; a role may log in). Each one found is either declared
in the data map's [systems.postgres] tenant_objects, to be dropped with the tenant or kept
with the reason, or it stops the case, named, before anything is exported.

An object is named after the tenant when its name holds the tenant's id between characters
no id uses as a separator ('_', start, end...): `invoice_no_acme` is acme's, `invoice_no_
acme-corp` is not. Sequences a table's column owns (serial, identity) belong to that table;
those in the tenant's own schema go with the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.errors import DestructionIncompleteError, UnclassifiedDataError
from offboarding.core.names import qualified, split_qualified
from offboarding.core.records import CaseRef, LeftOut
from offboarding.datamap.systems import TenantObject

__all__ = [
    "NamedObject",
    "drop_named",
    "find_named",
    "named_left_out",
    "require_declared",
    "warnings",
]

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


@dataclass(frozen=True)
class NamedObject:
    kind: str  # sequence, role, publication
    name: str  # schema.name for a sequence, else the name
    declared: TenantObject | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def _named_after(name: str, tenant: str) -> bool:
    for match in re.finditer(re.escape(tenant), name):
        before = name[match.start() - 1] if match.start() else ""
        after = name[match.end()] if match.end() < len(name) else ""
        if not re.match(r"[A-Za-z0-9.-]", before) and not re.match(r"[A-Za-z0-9.-]", after):
            return True
    return False


def find_named(
    conn: psycopg.Connection[Any],
    tenant: str,
    declared: list[TenantObject],
    own_schema: str,
) -> list[NamedObject]:
    """The tenant's named objects: those the data map declares (that exist), and any other
    sequence, role or publication named after it (undeclared)."""
    by_name: dict[tuple[str, str], TenantObject] = {
        (d.kind, d.name.format(tenant=tenant)): d for d in declared
    }
    found = []
    for kind, schema, name in conn.execute(_CANDIDATES):
        full = qualified(schema, name) if schema else str(name)
        entry = by_name.get((str(kind), full))
        if entry is not None or (schema != own_schema and _named_after(str(name), tenant)):
            found.append(NamedObject(str(kind), full, entry))
    return found


def require_declared(case: CaseRef, found: list[NamedObject]) -> None:
    undeclared = [o for o in found if o.declared is None]
    if undeclared:
        first = undeclared[0]
        raise UnclassifiedDataError(
            f"object(s) named after tenant {case.tenant!r}: "
            f"{', '.join(o.describe() for o in undeclared)}. A destruction would leave them "
            "(a sequence's value, a role that can log in). Nothing is exported until the data "
            "map says what becomes of each: [[systems.postgres.tenant_objects]] kind = "
            f'"{first.kind}", name = "{first.name.replace(case.tenant, "{tenant}")}", '
            'action = "drop" (or "keep" with why = "...")'
        )


def named_left_out(found: list[NamedObject]) -> list[LeftOut]:
    return [
        LeftOut(
            name=o.name,
            kind="tenant object",
            system="postgres",
            why=f"{o.kind} named after the tenant, kept: {o.declared.why}",
        )
        for o in found
        if o.declared is not None and o.declared.action == "keep"
    ]


def warnings(found: list[NamedObject]) -> list[str]:
    """A dry run's warning for each undeclared one (a case stops on it)."""
    return [
        f"{o.describe()}: named after the tenant and not in the data map's tenant_objects; a "
        "case stops until it is declared (drop, or keep with why)"
        for o in found
        if o.declared is None
    ]


def drop_named(conn: psycopg.Connection[Any], found: list[NamedObject]) -> list[str]:
    """Drop each object the data map says to drop; the names dropped."""
    dropped = []
    for obj in found:
        if obj.declared is None or obj.declared.action != "drop":
            continue
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
