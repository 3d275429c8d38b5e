"""Database objects named after a tenant, for any SQL database: a sequence a trigger made for
its per-account numbering, a role, a publication. They hold no rows, but they are the tenant's
(a sequence's value says how many invoices it issued; a role may log in). Each one found is
declared in the data map's tenant_objects, to be dropped with the tenant or kept with the
reason, or it stops the case, named, before anything is exported.

An object is named after the tenant when its name holds the tenant's id between characters
no id uses inside it ('_', start, end...): `invoice_no_acme` is acme's, `invoice_no_acme-corp`
is not. Each database lists its candidates (postgres/named.py, the MariaDB catalogue's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from offboarding.core.errors import UnclassifiedDataError
from offboarding.core.records import CaseRef, LeftOut
from offboarding.datamap.systems import TenantObject

__all__ = ["NamedObject", "left_out", "match_named", "require_declared", "to_drop", "warnings"]


@dataclass(frozen=True)
class NamedObject:
    kind: str  # sequence, role, publication
    name: str  # schema.name for a sequence, else the name
    declared: TenantObject | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def named_after(name: str, tenant: str) -> bool:
    for match in re.finditer(re.escape(tenant), name):
        before = name[match.start() - 1] if match.start() else ""
        after = name[match.end()] if match.end() < len(name) else ""
        if not re.match(r"[A-Za-z0-9.-]", before) and not re.match(r"[A-Za-z0-9.-]", after):
            return True
    return False


def match_named(
    candidates: Iterable[tuple[str, str, str]], tenant: str, declared: list[TenantObject]
) -> list[NamedObject]:
    """Of the database's (kind, full name, bare name) candidates, the tenant's: those the data
    map declares, and any other named after the tenant (undeclared)."""
    by_name: dict[tuple[str, str], TenantObject] = {
        (d.kind, d.name.format(tenant=tenant)): d for d in declared
    }
    found = []
    for kind, full, bare in candidates:
        entry = by_name.get((kind, full))
        if entry is not None or named_after(bare, tenant):
            found.append(NamedObject(kind, full, entry))
    return found


def to_drop(found: list[NamedObject]) -> list[NamedObject]:
    return [o for o in found if o.declared is not None and o.declared.action == "drop"]


def require_declared(case: CaseRef, setting: str, found: list[NamedObject]) -> None:
    undeclared = [o for o in found if o.declared is None]
    if undeclared:
        first = undeclared[0]
        raise UnclassifiedDataError(
            f"object(s) named after tenant {case.tenant!r}: "
            f"{', '.join(o.describe() for o in undeclared)}. A destruction would leave them "
            "(a sequence's value, a role that can log in). Nothing is exported until the data "
            f"map says what becomes of each: [[{setting}.tenant_objects]] kind = "
            f'"{first.kind}", name = "{first.name.replace(case.tenant, "{tenant}")}", '
            'action = "drop" (or "keep" with why = "...")'
        )


def left_out(system: str, found: list[NamedObject]) -> list[LeftOut]:
    return [
        LeftOut(
            name=o.name,
            kind="tenant object",
            system=system,
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
