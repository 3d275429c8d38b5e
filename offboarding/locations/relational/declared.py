"""What `offboard datamap check` says of each reference the data map declares, for any SQL
database: whether its columns can hold the parent's key, and what the data makes of it.

- **orphans**: child rows whose key is set (not NULL, not a none value, of the reference's
  type) but names no parent row. They reach no tenant: no case exports or destroys them.
- **two tenants**: child rows whose parent through this reference belongs to one tenant while
  the row itself (its owner column, or its other references) belongs to another. The data
  contradicts the declaration there: each such row is a shared row, which a case settles
  with the data map's shared_rows policies.

These counts read whole tables, once, at the operator's request: never during a case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from offboarding.core.errors import ConfigurationError
from offboarding.locations.relational.scope import RelationalScope
from offboarding.planning import CatalogTable, ForeignKey

__all__ = ["DeclaredCheck", "check_declared", "owner_of"]

Q = TypeVar("Q")
_MAX_DEPTH = 8


@dataclass(frozen=True)
class DeclaredCheck:
    reference: str
    rows: int  # child rows whose key is set
    orphans: int
    two_tenants: int

    def describe(self) -> str:
        return (
            f"{self.reference}: {self.rows} row(s) set, {self.orphans} orphan(s) (no parent: no "
            f"tenant's), {self.two_tenants} reaching two tenants (shared rows)"
        )


def owner_of(scope: RelationalScope[Q], table: str, alias: str, depth: int = 0) -> Q | None:
    """An expression of the tenant a row of `table` belongs to (through its first route that
    names one), or None where nothing says (a global table, a tenant schema's)."""
    c, d = scope.classification, scope.dialect
    if c.registry and table == c.registry:
        return d.column(table, alias, c.registry_id)
    if table in c.tenant_scoped:
        return d.column(table, alias, c.owner_column(table))
    links = c.derived.get(table, ())
    if not links or depth >= _MAX_DEPTH:
        return None
    parts = [p for fk in links if (p := _through(scope, table, alias, fk, depth)) is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else d.fill("coalesce({p})", p=d.join(parts, ", "))


def _through(
    scope: RelationalScope[Q], table: str, alias: str, fk: ForeignKey, depth: int
) -> Q | None:
    """The owner of the row `fk` points at, as a scalar subquery."""
    d = scope.dialect
    parent = f"o{depth}"
    owner = owner_of(scope, fk.references, parent, depth + 1)
    if owner is None:
        return None
    return d.fill(
        "(SELECT {o} FROM {t} {p} WHERE {ref} = {cols}{set} LIMIT 1)",
        o=owner,
        t=d.table(fk.references),
        p=d.alias(parent),
        ref=_columns(scope, fk.references, parent, fk.referenced_columns),
        cols=_columns(scope, table, alias, fk.columns),
        set=scope.pointing(table, alias, fk),
    )


def _columns(scope: RelationalScope[Q], table: str, alias: str, columns: Iterable[str]) -> Q:
    d = scope.dialect
    return d.fill("({c})", c=d.join((d.column(table, alias, c) for c in columns), ", "))


def check_declared(
    scope: RelationalScope[Q],
    tables: Iterable[CatalogTable],
    fetch: Callable[[Q], tuple[object, ...]],
) -> list[DeclaredCheck]:
    """Each declared reference's rows, orphans and rows reaching two tenants (module doc).
    `fetch` raises ConfigurationError where the database refuses a reference's statement
    (types it cannot compare, a none value the column cannot hold): named with the reference."""
    d = scope.dialect
    found = []
    for table in tables:
        for fk in table.foreign_keys:
            if not fk.declared:
                continue
            name = table.qualified
            parent = d.fill(
                "EXISTS (SELECT 1 FROM {t} p WHERE {ref} = {cols})",
                t=d.table(fk.references),
                ref=_columns(scope, fk.references, "p", fk.referenced_columns),
                cols=_columns(scope, name, "c", fk.columns),
            )
            mine = _own_owner(scope, table, fk)
            theirs = _through(scope, name, "c", fk, 0)
            crossing = (
                d.fill(
                    "({m}) IS NOT NULL AND ({t}) IS NOT NULL AND ({m}) <> ({t})", m=mine, t=theirs
                )
                if mine is not None and theirs is not None
                else d.text("FALSE")
            )
            query = d.fill(
                "SELECT count(*), coalesce(sum(CASE WHEN NOT {p} THEN 1 ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN {x} THEN 1 ELSE 0 END), 0) FROM {t} c WHERE {s}",
                p=parent,
                x=crossing,
                t=d.table(name),
                s=scope.is_set(name, "c", fk),
            )
            reference = fk.name.removeprefix("declared ")
            try:
                row = fetch(query)
            except ConfigurationError as error:  # the database's refusal, with the reference
                raise ConfigurationError(f"the data map's reference {reference}: {error}") from None
            found.append(
                DeclaredCheck(
                    reference=reference,
                    rows=int(str(row[0] or 0)),
                    orphans=int(str(row[1] or 0)),
                    two_tenants=int(str(row[2] or 0)),
                )
            )
    return found


def _own_owner(scope: RelationalScope[Q], table: CatalogTable, fk: ForeignKey) -> Q | None:
    """The row's tenant by anything but `fk`: its owner column, or its other routes."""
    c, d, name = scope.classification, scope.dialect, table.qualified
    if name in c.tenant_scoped or name == c.registry:
        return owner_of(scope, name, "c")
    others = [
        p
        for link in c.derived.get(name, ())
        if link != fk and (p := _through(scope, name, "c", link, 0)) is not None
    ]
    if not others:
        return None
    return others[0] if len(others) == 1 else d.fill("coalesce({p})", p=d.join(others, ", "))
