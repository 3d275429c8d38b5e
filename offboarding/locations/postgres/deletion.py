"""Destruction of the tenant's rows, proved by construction rather than by comparing the whole
platform before and after.

Under the freeze, before anything is deleted:
1. every table's doomed rows (the tenant's, by `Scope.destroyed`) are listed once, by key, in
   a temporary table of the session, in the order they can go (reply threads deepest first);
   their number per table must not exceed the frozen inventory's;
2. no row outside those lists references one of them, through any foreign key of the
   database in any table (a cascade or SET NULL would change it; NO ACTION would fail):
   if one does, nothing is deleted, and the rows, constraints and tenants are reported.
Then each table, children first, is deleted by key ranges of its list, in bounded
transactions; every statement returns the deleted rows' owner columns, and each row is checked
to be the tenant's before the transaction commits. VACUUM of the tables touched follows; the
tenant's own schema is dropped.

Every statement starts from the tenant's rows (its tenant-column index, then the keys of the
lists), so where the indexes the inventory asks for exist, the cost grows with the tenant, not
with the platform. (Turning sequential scans off was tried: where a foreign key has no index,
PostgreSQL's own referential checks then walk a whole primary-key index per deleted row, 50x
slower on the demo platform.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from offboarding.core.config import Settings
from offboarding.core.errors import (
    DestructionIncompleteError,
    IntegrityError,
    IsolationBreachError,
    SharedRowsError,
)
from offboarding.core.faults import crash_point
from offboarding.core.records import CaseRef
from offboarding.datamap import platform_shape
from offboarding.locations.base import Removal
from offboarding.locations.postgres.catalog import classify, column_list, ident, read_indexes
from offboarding.locations.postgres.scope import Scope, measure
from offboarding.planning import (
    CatalogTable,
    Classification,
    deletion_order,
    reached_through_indexes,
)

__all__ = [
    "Doomed",
    "IsolationProof",
    "Reference",
    "destroy_tenant",
    "drop_schema",
    "prove_isolation",
    "require_shared_policies",
    "shared_counts",
]

_ON_DELETE = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}
_WHOLE_TABLE_PLANS = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")
# Keys whose referencing rows PostgreSQL itself would change when the referenced row goes.
_CHANGES_REFERENCING = frozenset("cnd")


@dataclass(frozen=True)
class Doomed:
    """One table's rows to delete, listed by key in a temporary table `temp` (columns k0..,
    ord, size), `ord` the order they can be deleted in."""

    table: str
    temp: str
    keys: tuple[str, ...]  # the table's primary key, or ('ctid',) without one
    rows: int
    bytes: int
    cyclic: int = 0  # rows in reference cycles: deleted together in the last statement


@dataclass(frozen=True)
class Reference:
    """Rows outside the tenant's scope that reference the tenant's rows through one key."""

    constraint: str
    table: str
    references: str
    on_delete: str
    rows: int
    tenants: tuple[str, ...] = ()  # owners of the referencing rows, where a column names them
    crosses_tenants: bool = True
    allowed: bool = False  # shared rows the settings leave in place, detached by SET NULL

    def describe(self) -> str:
        owners = f" of tenant(s) {', '.join(self.tenants)}" if self.tenants else ""
        return (
            f"{self.rows} row(s) of {self.table}{owners} reference the tenant's rows in "
            f"{self.references} through {self.constraint} (ON DELETE "
            f"{_ON_DELETE.get(self.on_delete, self.on_delete)})"
        )


@dataclass
class IsolationProof:
    """What was established before deleting, and what each statement confirmed while
    deleting: the certificate's evidence that nothing else was touched."""

    doomed: dict[str, Doomed]
    references_checked: int
    detached: list[Reference] = field(default_factory=list)
    shared: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    earlier: dict[str, int] = field(default_factory=dict)  # removed by an interrupted attempt
    indexed: bool = False  # every statement could start from the tenant's rows (see planning)

    def summary(self, policies: Mapping[str, str]) -> str:
        tables = len(self.doomed)
        parts = [
            f"before deleting, {sum(d.rows for d in self.doomed.values()):,} rows of the tenant "
            f"in {tables} shared tables listed by key; {self.references_checked} foreign keys "
            "checked: no row outside the tenant's scope references them"
        ]
        if self.detached:
            parts.append(
                "shared rows left in place, detached by their keys' ON DELETE SET NULL: "
                + "; ".join(r.describe() for r in self.detached)
            )
        if self.shared:
            parts.append(
                "rows shared with other tenants, as configured: "
                + ", ".join(f"{t} {n} ({policies.get(t, '?')})" for t, n in self.shared.items())
            )
        if self.deleted:
            parts.append(
                "each delete statement returned its rows' owner columns, all of them the "
                "tenant's; rows deleted per table equal rows listed "
                f"({sum(self.deleted.values()):,})"
                + (
                    "; removed by an earlier interrupted attempt: "
                    + ", ".join(f"{t} {n}" for t, n in self.earlier.items())
                    if self.earlier
                    else ""
                )
            )
        return "; ".join(parts)


@contextmanager
def _from_indexes(
    conn: psycopg.Connection[Any], indexed: bool, *, joins: bool = False
) -> Iterator[None]:
    """Within the current transaction, plan the statements from the tenant's rows through
    indexes (sequential scans off), where every needed index exists: otherwise PostgreSQL's
    own plans, since without the index a sequential scan is the cheapest way there is."""
    if not indexed:
        yield
        return
    # `joins`, for joins of platform tables only: with sequential scans off, PostgreSQL may
    # still hash-join a whole table read in full through an index (measured: every comment of
    # the platform read to find the tenant's replies); nested loops start from the tenant's
    # rows. Joins to the lists keep their hash joins: a list is the tenant's size.
    settings = _WHOLE_TABLE_PLANS if joins else _WHOLE_TABLE_PLANS[:1]
    for setting in settings:
        conn.execute(f"SET LOCAL {setting} = off")
    try:
        yield
    finally:
        if not conn.broken and conn.info.transaction_status == TransactionStatus.INTRANS:
            for setting in settings:
                conn.execute(f"SET LOCAL {setting} TO DEFAULT")  # the session's own value


def _lists_in_memory(conn: psycopg.Connection[Any]) -> None:
    """Room for the lists in this session's memory (temporary tables live in temp_buffers,
    8 MB by default: a tenant's million keys would otherwise go through the disk)."""
    conn.execute("SET temp_buffers = '256MB'")
    conn.commit()


def _keys(table: CatalogTable) -> tuple[str, ...]:
    return table.primary_key or ("ctid",)


def _key_columns(alias: str, keys: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(alias, k) for k in keys))


def _names(prefix: str, count: int, alias: str | None = None) -> sql.Composed:
    """k0, k1, ... (or alias.k0, ...): the numbered columns of a temporary table."""
    return sql.SQL(", ").join(
        sql.Identifier(*((alias,) if alias else ()), f"{prefix}{n}") for n in range(count)
    )


def _row(prefix: str, count: int, alias: str) -> sql.Composed:
    return sql.SQL("({})").format(_names(prefix, count, alias))


def _list_doomed(
    conn: psycopg.Connection[Any], scope: Scope, table: CatalogTable, number: int, indexed: bool
) -> Doomed:
    """List the table's doomed rows by key, in an order they can be deleted in, in a temporary
    table. Reply threads (one key into the table itself): when every reply's key is greater
    than its parent's (serial keys), descending key order deletes replies first, at the cost
    of one pass; otherwise each row's depth in its thread is computed and the deepest go first.
    """
    temp_name = f"offboarding_doomed_{number}"
    temp = sql.Identifier(temp_name)
    keys, name = _keys(table), table.qualified
    threads = [fk for fk in table.foreign_keys if fk.references == name]
    thread = threads[0] if len(threads) == 1 else None
    width = len(thread.columns) if thread else 0
    serial = thread is not None and len(keys) == 1 and thread.referenced_columns == keys
    selected = [
        *(sql.SQL("{} AS {}").format(sql.Identifier("x", k), sql.Identifier(f"k{n}"))
          for n, k in enumerate(keys)),
        sql.SQL("pg_column_size(x.*) AS size"),
    ]  # fmt: skip
    if thread:  # the key a reply points at (r) and the reply's reference (s)
        selected += [
            sql.SQL("{} AS {}").format(sql.Identifier("x", c), sql.Identifier(f"{p}{n}"))
            for p, columns in (("r", thread.referenced_columns), ("s", thread.columns))
            for n, c in enumerate(columns)
        ]
    key_order = sql.SQL(", ").join(
        sql.SQL("{} DESC" if serial else "{}").format(sql.Identifier("x", k)) for k in keys
    )
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(temp))
    with _from_indexes(conn, indexed):
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {temp} AS SELECT {cols}, row_number() OVER (ORDER BY "
                "{order}) AS ord, {together} AS cyclic FROM {t} AS x WHERE {w}"
            ).format(
                temp=temp, cols=sql.SQL(", ").join(selected), order=key_order,
                # Several keys into the table itself: no single order; all rows go together.
                together=sql.SQL("true" if threads and not thread else "false"),
                t=ident(name), w=scope.destroyed(name, "x"),
            )
        )  # fmt: skip
    k = _names("k", len(keys))
    if thread:
        misordered = serial and conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE s0 >= k0)").format(temp)
        ).fetchone() == (True,)
        if not serial or misordered:
            _order_by_depth(conn, temp_name, len(keys), width)
    conn.execute(sql.SQL("CREATE INDEX ON {} (ord)").format(temp))
    conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(temp, k))
    conn.execute(sql.SQL("ANALYZE {}").format(temp))
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(size), 0), count(*) FILTER (WHERE cyclic) FROM {}"
        ).format(temp)
    ).fetchone()
    assert row is not None
    return Doomed(
        table=name, temp=temp_name, keys=keys, rows=int(row[0]), bytes=int(row[1]),
        cyclic=int(row[2]),
    )  # fmt: skip


def _order_by_depth(conn: psycopg.Connection[Any], temp_name: str, keys: int, width: int) -> None:
    """Renumber `ord` of a listed reply thread by depth, deepest first: roots (no listed parent)
    have depth 0, their replies 1, and so on. Rows never reached are in a reference cycle (or
    hang below one): they go together, in one last statement."""
    temp, staged = sql.Identifier(temp_name), sql.Identifier(f"{temp_name}_rows")
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(temp, staged))
    for prefix in ("r", "s"):
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(staged, _names(prefix, width)))
    conn.execute(sql.SQL("ANALYZE {}").format(staged))
    k = _names("k", keys)
    query = sql.SQL(
        "WITH RECURSIVE tree AS ("
        " SELECT {dk}, {dr}, 0 AS depth FROM {s} d"
        " WHERE {dnull} OR NOT EXISTS (SELECT 1 FROM {s} p WHERE {pr} = {ds})"
        " UNION ALL"
        " SELECT {ck}, {cr}, t.depth + 1 FROM tree t JOIN {s} c ON {cs} = {tr}"
        "), depth AS (SELECT {k}, max(depth) AS depth FROM tree GROUP BY {k}) "
        "SELECT {k}, d.size, row_number() OVER (ORDER BY t.depth DESC NULLS LAST, {k}) "
        "AS ord, t.depth IS NULL AS cyclic FROM {s} d LEFT JOIN depth t USING ({k})"
    ).format(
        s=staged, k=k,
        dk=_names("k", keys, "d"), dr=_names("r", width, "d"),
        dnull=sql.SQL(" OR ").join(
            sql.SQL("{} IS NULL").format(sql.Identifier("d", f"s{n}")) for n in range(width)
        ),
        pr=_row("r", width, "p"), ds=_row("s", width, "d"),
        ck=_names("k", keys, "c"), cr=_names("r", width, "c"),
        cs=_row("s", width, "c"), tr=_row("r", width, "t"),
    )  # fmt: skip
    conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} AS ").format(temp) + query)
    conn.execute(sql.SQL("DROP TABLE {}").format(staged))


def _doomed_match(doomed: Doomed, alias: str) -> sql.Composed:
    """The row `alias` (of doomed.table) is one of the listed rows."""
    return sql.SQL("EXISTS (SELECT 1 FROM {t} dd WHERE {dk} = {xk})").format(
        t=sql.Identifier(doomed.temp),
        dk=_row("k", len(doomed.keys), "dd"),
        xk=_key_columns(alias, doomed.keys),
    )


def _find_references(
    conn: psycopg.Connection[Any],
    classification: Classification,
    tables: list[CatalogTable],
    scope: Scope,
    policies: Mapping[str, str],
    indexed: bool,
    doomed: Mapping[str, Doomed] | None = None,
    batch: tuple[str, int, int] | None = None,
) -> tuple[int, list[Reference]]:
    """Every foreign key of the database into a tenant-owned table: how many rows outside the
    tenant's scope reference one of its rows. With `doomed`, the scope is the lists (and
    `batch` (table, low, high) narrows the check to the keys into that table and its listed
    rows with `ord` in (low, high]); without, the scope's own conditions.
    A key that is a derived table's only route to a tenant needs no query: a row reaching the
    tenant's rows through it is the tenant's by construction.
    Returns (keys checked, the keys some outside row uses)."""
    checked, found = 0, []
    owned = set(classification.owned)
    for child in tables:
        for fk in child.foreign_keys:
            if fk.references not in owned or (batch and fk.references != batch[0]):
                continue
            checked += 1
            if classification.derived.get(child.qualified) == (fk,):
                continue
            parent_list = doomed.get(fk.references) if doomed is not None else None
            own_list = doomed.get(child.qualified) if doomed is not None else None
            if own_list is not None:
                outside: sql.Composable = sql.SQL("NOT {}").format(_doomed_match(own_list, "c"))
            elif child.qualified in owned:
                outside = sql.SQL("({}) IS NOT TRUE").format(scope.destroyed(child.qualified, "c"))
                route = classification.derived.get(child.qualified, ())
                if fk.references == child.qualified and len(route) == 1:
                    # A reply on the same route as the row it answers (same post) is the
                    # tenant's as that row is: only replies across routes need the test.
                    outside = sql.SQL("{c} IS DISTINCT FROM {p} AND {outside}").format(
                        c=column_list(route[0].columns, "c"),
                        p=column_list(route[0].columns, "p"),
                        outside=outside,
                    )
            else:
                outside = sql.SQL("TRUE")
            referenced = column_list(fk.referenced_columns, "p")
            chosen: sql.Composable = scope.destroyed(fk.references, "p")
            parents: sql.Composable = sql.SQL("{} p").format(ident(fk.references))
            if parent_list is not None:
                chosen = (
                    sql.SQL("d.ord > {} AND d.ord <= {}").format(
                        sql.Literal(batch[1]), sql.Literal(batch[2])
                    )
                    if batch
                    else sql.SQL("TRUE")
                )
                parents = sql.SQL("{dt} d JOIN {pt} p ON {pk} = {dk}").format(
                    dt=sql.Identifier(parent_list.temp), pt=ident(fk.references),
                    pk=_key_columns("p", parent_list.keys),
                    dk=_row("k", len(parent_list.keys), "d"),
                )  # fmt: skip
                if fk.referenced_columns == parent_list.keys:
                    # The key references the listed key itself: the list gives its values.
                    parents = sql.SQL("{} d").format(sql.Identifier(parent_list.temp))
                    referenced = _row("k", len(parent_list.keys), "d")
            tenant_column = classification.tenant_column
            owners = (
                sql.SQL("array_agg(DISTINCT {})").format(sql.Identifier("c", tenant_column))
                if child.qualified in classification.tenant_scoped
                else sql.SQL("'{}'::text[]")
            )
            joined = sql.SQL(
                "FROM {parents} JOIN {ct} c ON {cc} = {pr} WHERE {chosen} AND {outside}"
            ).format(
                parents=parents,
                ct=ident(child.qualified),
                cc=column_list(fk.columns, "c"),
                pr=referenced,
                chosen=chosen,
                outside=outside,
            )
            with _from_indexes(conn, indexed, joins=doomed is None):
                row = conn.execute(
                    sql.SQL("SELECT count(*), {} ").format(owners) + joined
                ).fetchone()
            rows = int(row[0]) if row else 0
            if not rows:
                continue
            tenants = tuple(sorted(t for t in (row[1] if row else None) or () if t))
            # Shared rows the settings keep, whose key PostgreSQL sets to NULL: detached.
            kept = policies.get(child.qualified) in ("leave", "export")
            if kept and fk.on_delete in "nd":
                with _from_indexes(conn, indexed):
                    shared = conn.execute(
                        sql.SQL("SELECT count(*) ")
                        + joined
                        + sql.SQL(" AND {}").format(scope.shared_rows(child.qualified, "c"))
                    ).fetchone()
                kept = bool(shared and int(shared[0]) == rows)
            found.append(
                Reference(
                    constraint=fk.name or f"{child.qualified}({', '.join(fk.columns)})",
                    table=child.qualified,
                    references=fk.references,
                    on_delete=fk.on_delete,
                    rows=rows,
                    tenants=tenants,
                    crosses_tenants=child.qualified not in {
                        *classification.global_tables, *classification.excluded
                    },
                    allowed=kept and fk.on_delete in "nd",
                )
            )  # fmt: skip
    return checked, found


def _refuse(case: CaseRef, blocked: list[Reference]) -> None:
    """Stop before deleting: as an incident when the referencing rows are other tenants'."""
    lines = [r.describe() for r in blocked]
    fix = (
        "Nothing was deleted. Remove or re-point those references (or declare the table's "
        "shared rows in the data map's [systems.postgres] shared_rows, formerly "
        "OFFBOARD_SHARED_ROWS, with a key ON DELETE SET NULL), then rerun"
    )
    crossing = [r for r in blocked if r.crosses_tenants]
    if crossing:
        raise IsolationBreachError(
            f"destruction of tenant {case.tenant!r} would change other tenants' rows: "
            + "; ".join(lines) + ". " + fix,
            facts={
                "nature": "rows of other tenants reference rows of the offboarded tenant; "
                "deleting them would delete or change those tenants' rows, or fail",
                "affected_tenants": sorted({t for r in crossing for t in r.tenants}),
                "categories": sorted({r.table for r in crossing}),
                "approximate_records": sum(r.rows for r in crossing),
                "approximate_people": None,
            },
        )  # fmt: skip
    raise DestructionIncompleteError(
        f"destruction of tenant {case.tenant!r} would change platform rows: "
        + "; ".join(lines)
        + ". "
        + fix
    )


def shared_counts(
    conn: psycopg.Connection[Any], scope: Scope, classification: Classification
) -> dict[str, int]:
    return {
        table: count
        for table in classification.derived
        if scope.may_share(table) and (count := _count(conn, table, scope.shared_rows(table)))
    }


def require_shared_policies(
    case: CaseRef, shared: Mapping[str, int], policies: Mapping[str, str]
) -> None:
    unsettled = {t: n for t, n in shared.items() if t not in policies}
    if unsettled:
        tables = ", ".join(f"{t} ({n} rows)" for t, n in unsettled.items())
        first = next(iter(unsettled))
        raise SharedRowsError(
            f"rows of {tables} reference both tenant {case.tenant!r}'s rows and other "
            "tenants' rows: they are not the tenant's alone to export or destroy. The case "
            "stops until the data map says how each table's shared rows are handled, e.g. "
            f'[systems.postgres] shared_rows = {{ "{first}" = "leave" }} (or "delete" with the '
            'tenant, or "export" without destroying; formerly OFFBOARD_SHARED_ROWS)'
        )


def _prove(
    conn: psycopg.Connection[Any],
    settings: Settings,
    case: CaseRef,
    inventoried: Mapping[str, int] | None,
    listed: bool = True,
) -> tuple[Classification, list[CatalogTable], Scope, IsolationProof]:
    """Steps 1 and 2 of the module's docstring, on `conn` (whose temporary tables then hold
    the lists). Without `listed`, the same checks from the scope's conditions, no lists: the
    check before any location is destroyed. Raises, having deleted nothing, if either fails."""
    classification, tables, _ = classify(conn, settings)
    policies = platform_shape(settings).shared_rows
    scope = Scope(classification, case.tenant, policies)
    by_name = {t.qualified: t for t in tables}
    shared = shared_counts(conn, scope, classification)
    require_shared_policies(case, shared, policies)
    indexed = reached_through_indexes(classification, tables, read_indexes(conn))
    doomed: dict[str, Doomed] = {}
    if listed:
        doomed = {
            name: _list_doomed(conn, scope, by_name[name], n, indexed)
            for n, name in enumerate(classification.owned)
        }
        counts = {name: d.rows for name, d in doomed.items()}
    elif inventoried is not None:
        with _from_indexes(conn, indexed, joins=True):
            # What the comparison with the frozen inventory reads: counts, no sizes, of every
            # table (one the inventory does not know must hold nothing of the tenant).
            counts = {
                name: _count(conn, name, scope.destroyed(name)) for name in classification.owned
            }
    else:
        counts = {}
    # The tenant's own schema is dropped whole: its tables are compared with the inventory too.
    for name in classification.schema_tables_of(case.tenant):
        counts[name] = _count(conn, name, sql.SQL("TRUE"))
    conn.commit()
    earlier = _against_inventory(case, counts, shared, policies, inventoried)
    checked, references = _find_references(
        conn, classification, tables, scope, policies, indexed, doomed if listed else None
    )
    conn.commit()
    blocked = [r for r in references if not r.allowed]
    if blocked:
        _refuse(case, blocked)
    proof = IsolationProof(
        doomed=doomed,
        references_checked=checked,
        detached=[r for r in references if r.allowed],
        shared=shared,
        earlier=earlier,
        indexed=indexed,
    )
    return classification, tables, scope, proof


def _count(conn: psycopg.Connection[Any], table: str, where: sql.Composable) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident(table), where)
    ).fetchone()
    return int(row[0]) if row else 0


def _against_inventory(
    case: CaseRef,
    counts: Mapping[str, int],
    shared: Mapping[str, int],
    policies: Mapping[str, str],
    inventoried: Mapping[str, int] | None,
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
        if own < exported:
            earlier[name] = exported - own
    return earlier


def prove_isolation(
    settings: Settings, case: CaseRef, inventoried: Mapping[str, int] | None = None
) -> IsolationProof:
    """Steps 1 and 2 alone, from the scope's conditions, deleting nothing: run before any
    location is destroyed, so a case that cannot be destroyed cleanly stops with every copy
    still in place. (The destroy repeats them on its lists, right before deleting.)"""
    with psycopg.connect(settings.require_database()) as conn:
        return _prove(conn, settings, case, inventoried, listed=False)[3]


def destroy_tenant(
    settings: Settings,
    case: CaseRef,
    technique: str,
    inventoried: Mapping[str, int] | None = None,
) -> tuple[Removal, IsolationProof]:
    """Prove, then delete children first by key ranges in bounded transactions, each row
    checked to be the tenant's; VACUUM; drop the tenant's own schema."""
    with psycopg.connect(settings.require_database()) as conn:
        _lists_in_memory(conn)
        classification, tables, scope, proof = _prove(conn, settings, case, inventoried)
        by_name = {t.qualified: t for t in tables}
        own_schema = list(classification.schema_tables_of(case.tenant))
        in_schema = [measure(conn, t, sql.SQL("TRUE")) for t in own_schema]
        # The platform's write guard lets this session, and only it, change a frozen tenant.
        conn.execute(
            "SELECT set_config('offboarding.destroying_tenant', %s, false)", (case.tenant,)
        )
        conn.commit()
        # Keys through which PostgreSQL would change a referencing row: re-checked per batch,
        # under the batch's row locks, against rows written since the proof.
        hazards = {
            fk.references
            for t in tables
            for fk in t.foreign_keys
            if fk.on_delete in _CHANGES_REFERENCING and fk.references in proof.doomed
        }
        parents = {
            t: {fk.references for fk in by_name[t].foreign_keys} for t in classification.owned
        }
        for table in deletion_order(parents):
            proof.deleted[table] = _delete_listed(
                conn, case, scope, proof, by_name[table], settings.destruction.delete_batch_rows,
                (classification, tables) if table in hazards else None,
            )  # fmt: skip
        drop_schema(
            conn,
            platform_shape(settings).tenant_schema_pattern.format(tenant=case.tenant),
            own_schema,
        )
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        for table, listed in proof.doomed.items():
            if listed.rows:  # dead tuples still hold the deleted values until vacuumed
                conn.execute(sql.SQL("VACUUM {}").format(ident(table)))
    removal = Removal(
        items_before=sum(d.rows for d in proof.doomed.values()) + sum(r for r, _ in in_schema),
        bytes_before=sum(d.bytes for d in proof.doomed.values()) + sum(b for _, b in in_schema),
        items_removed=sum(proof.deleted.values()) + sum(r for r, _ in in_schema),
        technique=technique,
        isolation=proof.summary(platform_shape(settings).shared_rows),
        details={f"deleted {t}": str(n) for t, n in proof.deleted.items() if n},
    )
    return removal, proof


def _owner_check(scope: Scope, doomed: Mapping[str, Doomed], table: str) -> sql.Composable:
    """The deleted row `gone` is the tenant's: its tenant column, or, for a row whose only
    route is one key to a listed parent, that key among the parent's listed keys (the lists
    are the tenant's rows as proved before deleting); else the scope's own condition."""
    route = scope.classification.derived.get(table, ())
    parent = doomed.get(route[0].references) if len(route) == 1 else None
    if parent is None or route[0].referenced_columns != parent.keys:
        return scope.destroyed(table, "gone")
    return sql.SQL("EXISTS (SELECT 1 FROM {p} pl WHERE {keys} = {cols})").format(
        p=sql.Identifier(parent.temp),
        keys=_row("k", len(parent.keys), "pl"),
        cols=column_list(route[0].columns, "gone"),
    )


def _delete_listed(
    conn: psycopg.Connection[Any],
    case: CaseRef,
    scope: Scope,
    proof: IsolationProof,
    table: CatalogTable,
    batch_rows: int,
    hazard: tuple[Classification, list[CatalogTable]] | None,
) -> int:
    """Delete the table's listed rows in `ord` ranges of `batch_rows`, the rows of reference
    cycles last and together; check each returned row is the tenant's before committing."""
    listed = proof.doomed[table.qualified]
    name = table.qualified
    owner_columns = sorted(
        {scope.classification.tenant_column}
        if name in scope.classification.tenant_scoped
        else {c for fk in scope.classification.derived.get(name, ()) for c in fk.columns}
    )
    # One key column: `= ANY(array)`, which PostgreSQL serves from the key's index (or the
    # row's address), where a join to the list may be planned as a scan of the whole table.
    batch_rows_of = (
        sql.SQL("{x} = ANY(ARRAY(SELECT d.k0 FROM {d} AS d WHERE d.ord > %s AND d.ord <= %s))")
        if len(listed.keys) == 1
        else sql.SQL(
            "{x} IN (SELECT {dk} FROM {d} AS d WHERE d.ord > %s AND d.ord <= %s)"
        )
    ).format(
        x=sql.Identifier("x", listed.keys[0]) if len(listed.keys) == 1
        else _key_columns("x", listed.keys),
        d=sql.Identifier(listed.temp), dk=_names("k", len(listed.keys), "d"),
    )  # fmt: skip
    statement = sql.SQL(
        "WITH gone AS (DELETE FROM {t} AS x WHERE {rows} RETURNING {owners}) "
        "SELECT count(*), count(*) FILTER (WHERE ({mine}) IS NOT TRUE) FROM gone"
    ).format(
        t=ident(name), rows=batch_rows_of,
        owners=sql.SQL(", ").join(sql.Identifier("x", c) for c in owner_columns),
        mine=_owner_check(scope, proof.doomed, name),
    )  # fmt: skip
    ordered = listed.rows - listed.cyclic
    batches = [(lo, min(lo + batch_rows, ordered)) for lo in range(0, ordered, batch_rows)]
    if listed.cyclic:
        batches.append((ordered, listed.rows))
    deleted = 0
    for low, high in batches:
        with conn.transaction():
            if hazard:
                conn.execute(
                    sql.SQL(
                        "SELECT 1 FROM {t} AS x JOIN {d} AS d ON {xk} = {dk} "
                        "WHERE d.ord > %s AND d.ord <= %s FOR UPDATE OF x"
                    ).format(
                        t=ident(name),
                        d=sql.Identifier(listed.temp),
                        xk=_key_columns("x", listed.keys),
                        dk=_row("k", len(listed.keys), "d"),
                    ),
                    (low, high),
                )
                classification, tables = hazard
                _, references = _find_references(
                    conn, classification, tables, scope, scope.shared, proof.indexed,
                    proof.doomed, batch=(name, low, high),
                )  # fmt: skip
                blocked = [r for r in references if not r.allowed]
                if blocked:
                    _refuse(case, blocked)
            try:
                with _from_indexes(conn, proof.indexed):
                    row = conn.execute(statement, (low, high)).fetchone()
            except (
                psycopg.errors.ForeignKeyViolation,
                psycopg.errors.RestrictViolation,
            ) as error:
                raise DestructionIncompleteError(
                    f"deleting tenant {case.tenant!r}'s rows of {name} was refused by "
                    f"{error.diag.constraint_name or 'a foreign key'} on "
                    f"{error.diag.table_name or 'another table'}: a row outside the tenant's "
                    "scope began referencing them after the check. That batch was rolled back; "
                    "rerun the destruction: its check names the rows"
                ) from error
            count, stray = (int(row[0]), int(row[1])) if row else (0, 0)
            if stray:
                raise IsolationBreachError(
                    f"a delete of {name} returned {stray} row(s) that are not tenant "
                    f"{case.tenant!r}'s; the statement was rolled back and destruction "
                    "stopped. Find what re-used the tenant's keys since the freeze",
                    facts={
                        "nature": "a row listed for deletion no longer belonged to the "
                        "offboarded tenant when it was deleted (rolled back)",
                        "affected_tenants": [], "categories": [name],
                        "approximate_records": stray, "approximate_people": None,
                    },
                )  # fmt: skip
        crash_point("postgres:batch-deleted")
        deleted += count
    return deleted


def drop_schema(conn: psycopg.Connection[Any], schema: str, tables: list[str]) -> None:
    with conn.transaction():
        if tables:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.SQL(", ").join(ident(t) for t in tables)
                )
            )
        try:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(schema)))
        except psycopg.errors.DependentObjectsStillExist as error:
            raise DestructionIncompleteError(
                f"schema {schema} of tenant still holds objects other than tables ({error}); "
                "drop them after review, then rerun the destruction"
            ) from error
