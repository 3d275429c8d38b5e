"""Steps 1 and 2 of a relational destruction, for any SQL database: the tenant's rows listed
by key, then proved referenced by no row outside them. Nothing is deleted here.

1. Every owned table's doomed rows (the scope's `destroyed` rows) are listed once, by key, in
   a temporary table of the session (`Engine.list_rows`), in the order they can go. Their
   number per table may not exceed the frozen inventory's: more means rows written after the
   export, never handed over.
2. No row outside those lists references one of them, through any foreign key of the
   database into an owned table, whatever its ON DELETE rule (a cascade or SET NULL would
   change it, NO ACTION would fail). If one does, nothing is deleted: an incident when the
   referencing rows are other tenants', else a stop naming the rows and the key.

The queries are written here once from the dialect's pieces; the engine runs them (on
PostgreSQL, with its index-first plans) and lists the rows its own way. Without lists
(`listed=False`) the same checks run from the scope's conditions: the check made before any
system is destroyed, cheaper, with nothing left in the session.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal, TypeVar

from offboarding.core.errors import (
    DestructionIncompleteError,
    IntegrityError,
    IsolationBreachError,
    SharedRowsError,
)
from offboarding.core.records import CaseRef
from offboarding.locations.relational.engine import (
    REFUSES_DELETE,
    Engine,
    IsolationProof,
    Listed,
    Queries,
    Reference,
    Window,
)
from offboarding.locations.relational.scope import RelationalScope
from offboarding.planning import CatalogTable, ForeignKey

__all__ = [
    "against_inventory",
    "find_references",
    "guarded_by_batches",
    "prove",
    "refuse",
    "refused_by_database",
    "require_shared_policies",
    "shared_counts",
]

Q = TypeVar("Q")


def _outside(
    queries: Queries[Q],
    scope: RelationalScope[Q],
    child: CatalogTable,
    fk: ForeignKey,
    doomed: Mapping[str, Listed] | None,
) -> Q:
    """The referencing row `c` is not among the rows the destruction removes."""
    d, c = queries.d, scope.classification
    own = doomed.get(child.qualified) if doomed is not None else None
    if own is not None:
        second = doomed is not None and fk.references == child.qualified
        return d.fill("NOT {m}", m=queries.is_listed(own, "c", second=second))
    if child.qualified not in c.owned:
        return d.text("TRUE")
    outside = d.fill("({w}) IS NOT TRUE", w=scope.destroyed(child.qualified, "c"))
    route = c.derived.get(child.qualified, ())
    if fk.references == child.qualified and len(route) == 1:
        # A reply on the same route as the row it answers (same post) is the tenant's as that
        # row is: only replies across routes need the test.
        return d.fill(
            "{x} AND {o}",
            x=d.distinct(
                queries.columns("c", route[0].columns), queries.columns("p", route[0].columns)
            ),
            o=outside,
        )
    return outside


def _referencing(
    engine: Engine[Q],
    child: CatalogTable,
    fk: ForeignKey,
    doomed: Mapping[str, Listed] | None,
    window: Window | None,
) -> tuple[Q, Q]:
    """FROM ... WHERE ... of the rows outside the scope referencing the doomed rows through
    `fk`, and the aggregate of their owners."""
    d, scope = engine.dialect, engine.scope
    queries = Queries(d)
    referenced = queries.columns("p", fk.referenced_columns)
    chosen = scope.destroyed(fk.references, "p")
    parents = d.fill("{t} p", t=d.table(fk.references))
    parent_list = doomed.get(fk.references) if doomed is not None else None
    if parent_list is not None:
        chosen = (
            d.fill(
                "d.ord > {lo} AND d.ord <= {hi}", lo=d.number(window.low), hi=d.number(window.high)
            )
            if window
            else d.text("TRUE")
        )
        width = len(parent_list.keys)
        if fk.referenced_columns == parent_list.keys:
            # The key references the listed key itself: the list gives its values.
            parents = d.fill("{t} d", t=d.alias(parent_list.temp))
            referenced = queries.listed_keys("d", width)
        else:
            parents = d.fill(
                "{dt} d JOIN {pt} p ON {pk} = {dk}",
                dt=d.alias(parent_list.temp),
                pt=d.table(fk.references),
                pk=queries.columns("p", parent_list.keys),
                dk=queries.listed_keys("d", width),
            )
    column = scope.classification.owner_column(child.qualified)
    owners = d.owners(
        d.column("", "c", column) if child.qualified in scope.classification.tenant_scoped else None
    )
    joined = d.fill(
        "FROM {parents} JOIN {ct} c ON {cc} = {pr}{set} WHERE {chosen} AND {outside}",
        parents=parents,
        ct=d.table(child.qualified),
        cc=queries.columns("c", fk.columns),
        pr=referenced,
        set=scope.pointing(child.qualified, "c", fk),
        chosen=chosen,
        outside=_outside(queries, scope, child, fk, doomed),
    )
    return joined, owners


def refused_by_database(engine: Engine[Any], fk: ForeignKey) -> bool:
    """A key of the database itself through which it refuses the delete of a row still
    referenced (NO ACTION, RESTRICT): the database checks it at every delete."""
    return engine.refuses and not fk.declared and fk.on_delete in REFUSES_DELETE


def guarded_by_batches(engine: Engine[Any], fk: ForeignKey) -> bool:
    """A key every batch of the deletion guards by itself: refused by the database, or a
    reference the data map declares (checked again for each batch's rows, deletion.py)."""
    return fk.declared or refused_by_database(engine, fk)


def find_references(
    engine: Engine[Q],
    doomed: Mapping[str, Listed] | None = None,
    window: Window | None = None,
    *,
    leave: Literal["", "refused", "guarded"] = "",
) -> tuple[int, list[Reference]]:
    """Every foreign key of the database into an owned table: how many rows outside the
    tenant's scope reference one of its rows. With `doomed`, the scope is the lists (and
    `window` narrows the check to the keys into that table and the window's rows); without,
    the scope's own conditions. Before deleting, a key that is a derived table's only route to
    a tenant needs no query: a row reaching the tenant's rows through it is the tenant's by
    construction (while deleting, such a row outside the lists was written since: counted).
    `leave` leaves keys out: "refused", those the database refuses the delete through (a
    batch's check: the delete cannot get past them); "guarded", those and the declared ones
    (the destroy's proof, after the isolation check: every batch guards them).
    Returns (keys checked, the keys some outside row uses)."""
    d, classification = engine.dialect, engine.scope.classification
    owned = set(classification.owned)
    checked, found = 0, []
    for child in engine.tables:
        for fk in child.foreign_keys:
            if fk.references not in owned or (window and fk.references != window.table):
                continue
            checked += 1
            if window is None and classification.derived.get(child.qualified) == (fk,):
                continue  # (a batch's check counts rows written since the lists: not skipped)
            if (leave == "refused" and refused_by_database(engine, fk)) or (
                leave == "guarded" and guarded_by_batches(engine, fk)
            ):
                continue
            joined, owners = _referencing(engine, child, fk, doomed, window)
            # Nested loops from the tenant's rows (or the window's): a hash or merge join would
            # read the referencing table's index as far as the tenant's keys reach, a cost
            # that grows with the platform (measured: a window's check slower the older its keys).
            row = engine.fetch(d.fill("SELECT count(*), {o} {j}", o=owners, j=joined), "joins")
            rows = int(row[0] or 0)
            if not rows:
                continue
            # Rows of an excluded table another system covers, under a key the database lets
            # go (declared, or one that cascades or detaches): left for that system.
            handler = classification.handled_by.get(child.qualified, "")
            left_for = handler if handler and (fk.declared or fk.on_delete in "cnd") else ""
            # Shared rows the data map keeps, whose key the database sets to NULL: detached.
            kept = engine.policies.get(child.qualified) in ("leave", "export")
            if kept and fk.on_delete in "nd":
                shared = engine.fetch(
                    d.fill(
                        "SELECT count(*) {j} AND {s}",
                        j=joined,
                        s=engine.scope.shared_rows(child.qualified, "c"),
                    )
                )
                kept = int(shared[0] or 0) == rows
            found.append(
                Reference(
                    constraint=fk.name or f"{child.qualified}({', '.join(fk.columns)})",
                    table=child.qualified,
                    references=fk.references,
                    on_delete=fk.on_delete,
                    rows=rows,
                    tenants=d.owner_values(row[1]),
                    crosses_tenants=child.qualified
                    not in {*classification.global_tables, *classification.excluded},
                    allowed=(kept and fk.on_delete in "nd") or bool(left_for),
                    left_for=left_for,
                )
            )
    return checked, found


def refuse(engine: Engine[Any], case: CaseRef, blocked: list[Reference]) -> None:
    """Stop before deleting: as an incident when the referencing rows are other tenants'."""
    lines = "; ".join(r.describe() for r in blocked)
    fix = (
        "Nothing was deleted. Remove or re-point those references (or declare the table's "
        f"shared rows in the data map's {engine.setting} shared_rows{_formerly(engine)}, with a "
        "key ON DELETE SET NULL), then rerun"
    )
    crossing = [r for r in blocked if r.crosses_tenants]
    if crossing:
        raise IsolationBreachError(
            f"system {engine.system!r}: destruction of tenant {case.tenant!r} would change "
            f"other tenants' rows: {lines}. {fix}",
            facts={
                "nature": "rows of other tenants reference rows of the offboarded tenant; "
                "deleting them would delete or change those tenants' rows, or fail",
                "affected_tenants": sorted({t for r in crossing for t in r.tenants}),
                "categories": sorted({r.table for r in crossing}),
                "approximate_records": sum(r.rows for r in crossing),
                "approximate_people": None,
            },
        )
    raise DestructionIncompleteError(
        f"system {engine.system!r}: destruction of tenant {case.tenant!r} would change "
        f"platform rows: {lines}. {fix}"
    )


def _formerly(engine: Engine[Any]) -> str:
    return f"; formerly {engine.formerly}" if engine.formerly else ""


def shared_counts(engine: Engine[Any]) -> dict[str, int]:
    """Per table, the rows reaching the tenant's rows and another tenant's at once."""
    scope, queries = engine.scope, Queries(engine.dialect)
    counts = {}
    for table in scope.classification.derived:
        if scope.may_share(table):
            row = engine.fetch(queries.count(table, scope.shared_rows(table)), "own")
            if int(row[0] or 0):
                counts[table] = int(row[0])
    return counts


def require_shared_policies(engine: Engine[Any], case: CaseRef, shared: Mapping[str, int]) -> None:
    unsettled = {t: n for t, n in shared.items() if t not in engine.policies}
    if unsettled:
        tables = ", ".join(f"{t} ({n} rows)" for t, n in unsettled.items())
        first = next(iter(unsettled))
        raise SharedRowsError(
            f"system {engine.system!r}: rows of {tables} reference both tenant "
            f"{case.tenant!r}'s rows and other tenants' rows: they are not the tenant's alone "
            "to export or destroy. The case stops until the data map says how each table's "
            f'shared rows are handled, e.g. {engine.setting} shared_rows = {{ "{first}" = '
            '"leave" } (or "delete" with the tenant, or "export" without destroying'
            f"{_formerly(engine)})"
        )


def against_inventory(
    case: CaseRef,
    counts: Mapping[str, int],
    shared: Mapping[str, int],
    policies: Mapping[str, str],
    inventoried: Mapping[str, int] | None,
    views: Collection[str] = (),
) -> dict[str, int]:
    """Refuse rows added since the export, and any table of the tenant's the frozen inventory
    does not know (created after the export: never delivered); return, per table, the rows an
    earlier, interrupted attempt already removed."""
    if inventoried is None:
        return {}
    unknown = sorted(name for name, found in counts.items() if found and name not in inventoried)
    if unknown:
        raise IntegrityError(
            f"table(s) {', '.join(unknown)} hold rows of tenant {case.tenant!r} but are not in "
            "the case's frozen inventory (created or classified after the export), so the "
            "client never received them. Nothing was deleted; export the tenant again (a new "
            "case), or find what created them on a frozen tenant"
        )
    earlier: dict[str, int] = {}
    for name, found in counts.items():
        expected = inventoried.get(name)
        if expected is None:
            continue  # holds nothing of the tenant (checked above)
        # Shared rows deleted with the tenant were never inventoried as its rows.
        own = found - (shared.get(name, 0) if policies.get(name) == "delete" else 0)
        exported = expected - (shared.get(name, 0) if policies.get(name) == "export" else 0)
        if own > exported:
            raise IntegrityError(
                f"{name} holds {own} rows of tenant {case.tenant!r}, more than the {exported} "
                "of the frozen inventory: rows were added after the export, so the client never "
                "received them. Nothing was deleted; export the tenant again (a new case) or "
                "find what writes to a frozen tenant"
            )
        if own < exported and name not in views:  # (a view exports the entities kept too)
            earlier[name] = exported - own
    return earlier


def prove(
    engine: Engine[Any],
    case: CaseRef,
    inventoried: Mapping[str, int] | None,
    *,
    listed: bool = True,
) -> IsolationProof:
    """Steps 1 and 2 (the module's docstring) on the engine's session, whose temporary
    tables then hold the lists. Raises, having deleted nothing, if either fails."""
    scope, queries = engine.scope, Queries(engine.dialect)
    classification = scope.classification
    by_name = {t.qualified: t for t in engine.tables}
    shared = shared_counts(engine)
    require_shared_policies(engine, case, shared)
    doomed: dict[str, Listed] = {}
    counts: dict[str, int] = {}
    if listed:
        doomed = {
            name: engine.list_rows(by_name[name], n) for n, name in enumerate(classification.owned)
        }
        counts = {name: d.rows for name, d in doomed.items()}
    elif inventoried is not None:
        # What the comparison with the frozen inventory reads: counts of every owned table
        # (one the inventory does not know must hold nothing of the tenant).
        for name in classification.owned:
            row = engine.fetch(queries.count(name, scope.destroyed(name)), "joins")
            counts[name] = int(row[0] or 0)
    # The tenant's own schema is dropped whole: its tables are compared with the inventory too.
    for name in classification.schema_tables_of(case.tenant):
        everything = queries.count(name, engine.dialect.text("TRUE"))
        counts[name] = int(engine.fetch(everything, "own")[0] or 0)
    engine.commit()
    earlier = against_inventory(
        case, counts, shared, engine.policies, inventoried, views=classification.entities
    )
    # Before deleting, keys every batch guards are left to the batches: the isolation check
    # proved them before any location was touched, and a row referencing the tenant's since
    # stops its batch (the database refuses it, or the batch's check finds it: deletion.py).
    # Keys through which the database would change a row are checked here too.
    checked, references = find_references(
        engine, doomed if listed else None, leave="guarded" if listed else ""
    )
    engine.commit()
    blocked = [r for r in references if not r.allowed]
    if blocked:
        refuse(engine, case, blocked)
    guarded = sum(
        1
        for child in engine.tables
        for fk in child.foreign_keys
        if listed and fk.references in classification.owned and guarded_by_batches(engine, fk)
    )
    return IsolationProof(
        doomed=doomed,
        references_checked=checked,
        references_guarded=guarded,
        detached=[r for r in references if r.allowed],
        shared=shared,
        earlier=earlier,
        indexed=engine.indexed,
    )
