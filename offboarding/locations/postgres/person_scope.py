"""One person in the platform's PostgreSQL database: where their rows are, checked against the
catalogue, and the objects those rows name.

The person is the row of the person table (e.g. public.users) with the given key, within the
tenant. Their rows elsewhere are those whose `by` column holds that key, within the tenant's
own rows (the same conditions the export and the destruction use), so a person reference can
never reach another tenant's rows. Every foreign key that points at the person table must be
declared: a table the data map forgot would keep the person's rows through an erasure, so an
undeclared one stops the request, as an unclassified table stops a case.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import PgColumn
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.core.names import split_qualified
from offboarding.datamap import PersonScope, datamap_of, platform_shape
from offboarding.datamap.systems import _TENANT_PLACEHOLDER
from offboarding.locations.postgres.catalog import classify, ident
from offboarding.locations.postgres.scope import Scope, measure
from offboarding.planning import CatalogTable, Classification, ForeignKey
from offboarding.stores import ObjectStore

__all__ = [
    "PersonSelection",
    "erasure_problems",
    "person_conditions",
    "person_files",
    "person_keys",
    "require_person",
    "scope_problems",
]

_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})


def _column_kinds(columns: dict[str, Any], table: str) -> dict[str, tuple[str, bool]]:
    return {c.name: (c.type_name, c.not_null) for c in columns[table]}


def _named_columns(scope: PersonScope) -> dict[str, list[str]]:
    """Every column the scope names, per table (the person table first)."""
    named = {
        scope.table: [scope.key, *scope.personal, *scope.links, *scope.disclose]
        + ([scope.tombstone.column] if scope.tombstone and scope.tombstone.column else [])
    }
    for table, entry in scope.tables.items():
        own = [entry.by, *entry.personal, *entry.files] if entry.by else []
        named[table] = [*own, *entry.links, *entry.disclose]
    return named


def _declared_columns(scope: PersonScope, table: str) -> set[str]:
    """The columns of `table` the scope declares as pointing at the person."""
    if table == scope.table:
        return set(scope.links)
    entry = scope.tables.get(table)
    return {*([entry.by] if entry.by else []), *entry.links} if entry else set()


def _person_column(scope: PersonScope, table: str, fk: ForeignKey) -> str | None:
    """The column of a key to the person table that the scope declares as pointing at the
    person: the one matching the person's key, the others being the tenant's (a composite
    key such as (tenant_id, assignee_id)). None if the scope declares none of them."""
    declared = _declared_columns(scope, table)
    return next(
        (c for c, r in zip(fk.columns, fk.referenced_columns, strict=True)
         if c in declared and r == scope.key),
        None,
    )  # fmt: skip


def _undeclared(scope: PersonScope, tables: list[CatalogTable]) -> list[str]:
    """Every foreign key (or declared reference) to the person table that [person] leaves
    out: the person's rows there would be left behind, or block the erasure."""
    found = []
    for catalog_table in tables:
        referencing = catalog_table.qualified
        for fk in catalog_table.foreign_keys:
            if fk.references != scope.table or _person_column(scope, referencing, fk):
                continue
            where = (
                "[person] links"
                if referencing == scope.table
                else f'[person.tables."{referencing}"]'
            )
            found.append(
                f"{referencing}.{', '.join(fk.columns)} points at {scope.table} (foreign key "
                f"{fk.name or 'declared'}) but [person] does not declare it: add it under "
                f"{where}, as by (the person's own rows) or as a link (clear, tombstone or "
                "keep), so the person's rows there are not left behind"
            )
    return found


def _link_problems(
    scope: PersonScope, tables: list[CatalogTable], columns: dict[str, Any]
) -> list[str]:
    """What the erasure would refuse about the columns pointing at the person in kept rows:
    a NULL a NOT NULL column cannot hold, a key kept pointing at a deleted row that the
    database's own key protects."""
    problems = []
    keys = {
        (t.qualified, column): fk
        for t in tables
        for fk in t.foreign_keys
        if fk.references == scope.table and (column := _person_column(scope, t.qualified, fk))
    }
    for table, column, rule in scope.link_rules():
        if rule == "clear" and _not_null(columns, table, column):
            problems.append(
                f"{table}.{column} is NOT NULL, so the erasure cannot clear it: reassign it to "
                'a tombstone person (rule "tombstone", with [person] tombstone), keep it with '
                "why, or delete those rows"
            )
        fk = keys.get((table, column))
        if rule == "keep" and scope.erase == "delete" and fk is not None and not fk.declared:
            problems.append(
                f"{table}.{column} is kept pointing at the person, whose row is deleted, and "
                f"the database's foreign key {fk.name} forbids (or cascades) that: clear it, "
                'reassign it ("tombstone"), or keep the person\'s row (erase = "pseudonymise")'
            )
    return problems


def scope_problems(
    scope: PersonScope, tables: list[CatalogTable], columns: dict[str, Any], owned: set[str]
) -> list[str]:
    """Everything in [person] the catalogue contradicts, which stops any request about a
    person (an answer would be incomplete): each as a sentence saying what to fix."""
    if scope.table not in columns:
        return [
            f"[person] table {scope.table!r} is not a table of the platform database: name "
            "the schema.table of the platform's people"
        ]
    if scope.table not in owned:
        return [
            f"[person] table {scope.table} holds no tenant rows (no tenant column, no foreign "
            "key to the tenant's rows): a person must belong to one tenant"
        ]
    if scope.table in scope.tables:  # the data map refuses it too; never trusted here
        return [
            f"[person.tables] names the person table {scope.table} itself: its rows are "
            f"selected by its key {scope.key!r} alone; other people's columns pointing at "
            "the person go under [person] links. Remove that entry"
        ]
    problems = []
    for table, named in _named_columns(scope).items():
        if table not in columns:
            problems.append(
                f"[person.tables] names {table!r}, which is not a table of the platform "
                "database: fix its schema.table name"
            )
            continue
        if table not in owned:
            problems.append(f"[person.tables] names {table}, which holds no tenant rows")
        kinds = _column_kinds(columns, table)
        problems += [
            f"{table} has no column {name!r}: fix the [person] entry"
            for name in dict.fromkeys(named)
            if name not in kinds
        ]
    return problems or _undeclared(scope, tables)


def erasure_problems(
    scope: PersonScope, tables: list[CatalogTable], columns: dict[str, Any]
) -> list[str]:
    """What an erasure would refuse whatever the data (an access answer is not concerned):
    a kept row's value or link that cannot be replaced, cleared or left."""
    problems = []
    kept = [(t, p.personal) for t, p in scope.tables.items() if p.erase == "pseudonymise"]
    if scope.erase == "pseudonymise":
        kept.append((scope.table, scope.personal))
    for table, personal in kept:
        kinds = _column_kinds(columns, table)
        problems += [
            f"{table}.{name} is NOT NULL and not text, so a kept row's value cannot be "
            'replaced: erase the rows (erase = "delete"), or allow NULL'
            for name in personal
            if kinds[name][1] and kinds[name][0] not in _TEXT_TYPES
        ]
    return problems + _link_problems(scope, tables, columns)


def _check_scope(
    scope: PersonScope,
    tables: list[CatalogTable],
    columns: dict[str, Any],
    owned: set[str],
    where: str,
) -> None:
    """Fail closed, naming every problem at once (see `scope_problems`)."""
    problems = scope_problems(scope, tables, columns, owned)
    if problems:
        raise ConfigurationError(f"{where}: " + "; ".join(problems))


def _not_null(columns: dict[str, Any], table: str, column: str) -> bool:
    return bool(_column_kinds(columns, table)[column][1])


@dataclass(frozen=True)
class PersonSelection:
    """Where one person's rows are, within the tenant. Per table: `own`, the person's own
    rows (the person table's by its key, each declared table's by its `by` column); `links`,
    per (table, column), the rows whose column names the person (others' rows, unless the
    same row is also the person's); `conditions`, every row a request about the person
    concerns (own or linked). Columns in a condition are qualified by their table's name."""

    conditions: dict[str, sql.Composable]
    own: dict[str, sql.Composable]
    links: dict[tuple[str, str], sql.Composable]
    tombstone: str | None  # the tombstone person's key, as text
    refusals: list[str]  # what an erasure would refuse whatever the data (erasure_problems)
    files_prefix: str | None  # the tenant's folder in the files store (None: no folder)
    no_object: dict[str, list[str]]  # per person file column (table.column): values naming none
    classification: Classification
    tables: dict[str, CatalogTable]
    columns: dict[str, list[PgColumn]]
    catalog: list[CatalogTable]  # every table of the database, for the references to them

    def others(self, table: str, column: str | None = None) -> sql.Composable:
        """Rows of `table` that point at the person through `column` (or any linking column)
        without being the person's own."""
        linked = [c for (t, n), c in self.links.items() if t == table and column in (None, n)]
        either = sql.SQL(" OR ").join(linked) if linked else sql.SQL("FALSE")
        own = self.own.get(table)
        if own is None:
            return sql.SQL("({})").format(either)
        return sql.SQL("(({}) AND NOT coalesce({}, FALSE))").format(either, own)

    def cast(self, table: str, column: str, value: str) -> sql.Composable:
        """`value` as a literal of the column's own type (so its index serves)."""
        pg_type = next(c.pg_type for c in self.columns[table] if c.name == column)
        return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(pg_type))


def _is_person(
    table: str, column: str, columns: dict[str, list[PgColumn]], tenant: sql.Composable, key: str
) -> sql.Composable:
    schema, name = split_qualified(table)
    pg_type = next(c.pg_type for c in columns[table] if c.name == column)
    # The key cast to the column's own type, so the column's index serves the condition.
    return sql.SQL("({tenant} AND {col} = {key}::{type})").format(
        tenant=tenant, col=sql.Identifier(schema, name, column), key=sql.Literal(key),
        type=sql.SQL(pg_type),
    )  # fmt: skip


def person_conditions(
    conn: psycopg.Connection[Any], settings: Settings, scope: PersonScope, tenant: str, person: str
) -> PersonSelection:
    """The person's rows in each table of the scope, after checking the scope against the
    catalogue (fail closed: see `scope_problems`)."""
    classification, tables, columns = classify(conn, settings)
    where = datamap_of(settings).source
    _check_scope(scope, tables, columns, set(classification.owned), where)
    tenant_scope = Scope(classification, tenant, platform_shape(settings).shared_rows)
    own = {
        scope.table: _is_person(
            scope.table, scope.key, columns, tenant_scope.where(scope.table), person
        )
    }
    links: dict[tuple[str, str], sql.Composable] = {}
    for table, column, _ in scope.every_link():
        links[(table, column)] = _is_person(
            table, column, columns, tenant_scope.where(table), person
        )
    for table, entry in scope.tables.items():
        if entry.by:
            own[table] = _is_person(table, entry.by, columns, tenant_scope.where(table), person)
    conditions: dict[str, sql.Composable] = {}
    for table in [scope.table, *scope.tables]:
        either = [
            c
            for c in [own.get(table), *(c for (t, _), c in links.items() if t == table)]
            if c is not None
        ]
        conditions[table] = (
            either[0] if len(either) == 1 else sql.SQL("({})").format(sql.SQL(" OR ").join(either))
        )
    by_name = {t.qualified: t for t in tables}
    selection = PersonSelection(
        conditions=conditions,
        own=own,
        links=links,
        tombstone=None,
        refusals=erasure_problems(scope, tables, columns),
        files_prefix=datamap_of(settings).files_prefix(tenant),
        no_object={
            f"{t}.{c}": platform_shape(settings).no_object(f"{t}.{c}")
            for t, entry in scope.tables.items()
            for c in entry.files
        },
        classification=classification,
        tables={name: by_name[name] for name in conditions},
        columns={name: columns[name] for name in conditions},
        catalog=tables,
    )
    if scope.tombstone is None:
        return selection
    return replace(
        selection, tombstone=_tombstone(conn, scope, selection, tenant_scope, tenant, person)
    )


def _tombstone(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    selection: PersonSelection,
    tenant_scope: Scope,
    tenant: str,
    person: str,
) -> str:
    """The tombstone person's key: one row of the tenant's people (or a row of no tenant's),
    never the person being erased."""
    assert scope.tombstone is not None
    column = scope.tombstone.column or scope.key
    value = scope.tombstone.value.replace(_TENANT_PLACEHOLDER, tenant)
    schema, name = split_qualified(scope.table)
    try:
        with conn.transaction():
            rows = conn.execute(sql.SQL(
                "SELECT {key}::text FROM {table} WHERE {col} = {value} AND {tenant} LIMIT 2"
            ).format(
                key=sql.Identifier(schema, name, scope.key), table=ident(scope.table),
                col=sql.Identifier(schema, name, column),
                value=selection.cast(scope.table, column, value),
                tenant=tenant_scope.where(scope.table),
            )).fetchall()  # fmt: skip
    except psycopg.DataError:
        rows = []
    if len(rows) != 1:
        raise ConfigurationError(
            f"[person] tombstone: {len(rows)} row(s) of tenant {tenant!r} in {scope.table} "
            f"where {column} = {value!r}; there must be exactly one (create the tombstone "
            "person in the client's space, or fix the tombstone)"
        )
    key = str(rows[0][0])
    if key == person:
        raise TenantError(
            f"person {person!r} is the tombstone that kept rows of erased people are "
            "reassigned to, not a person: no request is carried out for it"
        )
    return key


def person_files(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    selection: PersonSelection,
    files: ObjectStore,
    tenant: str,
    person: str,
    *,
    missing_ok: bool = False,
) -> list[str]:
    """The person's objects in the files store: the keys their rows name (but '' and the
    column's declared none values), and their own files (the [person] files keys), each in
    the tenant's folder where the store keeps one, and present. A named object that is
    missing stops an answer (it would be incomplete), unless `missing_ok` (an erasure: gone
    is what it wants, e.g. after a failed commit that had deleted the files)."""
    keys: set[str] = set()
    for table, entry in scope.tables.items():
        for column in entry.files:
            keys.update(
                str(r[0])
                for r in conn.execute(
                    sql.SQL(
                        "SELECT DISTINCT {c} FROM {t} WHERE {w} AND {c} IS NOT NULL "
                        "AND {c} <> ALL(%s)"
                    ).format(c=sql.Identifier(column), t=ident(table), w=selection.own[table]),
                    (selection.no_object[f"{table}.{column}"],),
                )
            )
    prefix = selection.files_prefix
    outside = sorted(k for k in keys if prefix and not k.startswith(prefix))
    if outside:
        raise TenantError(
            f"{len(outside)} object(s) named by the person's rows are outside tenant "
            f"{tenant!r}'s folder {prefix}: a person request touches only the tenant's files; "
            "correct the rows' references first"
        )
    missing = sorted(k for k in keys if not files.exists(k))
    if missing and missing_ok:
        keys.difference_update(missing)
    elif missing:
        raise TenantError(
            f"{len(missing)} object(s) named by the person's rows are missing from the files "
            "store: restore them or correct the rows, then retry (an answer without them "
            "would be incomplete)"
        )
    own = {p.format(tenant=tenant, person=person) for p in scope.files}
    keys.update(k for k in own if files.exists(k))
    return sorted(keys)


def require_person(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    conditions: dict[str, sql.Composable],
    tenant: str,
    person: str,
) -> tuple[int, int]:
    """The person's row (1, its bytes), or a clear error: not a key of the person table's
    type, or no person of this tenant (another tenant's person is none of this one's)."""
    try:
        with conn.transaction():
            found = measure(conn, scope.table, conditions[scope.table])
    except psycopg.DataError:
        raise TenantError(
            f"person reference {person!r} is not a value of {scope.table}.{scope.key}: "
            "give the person's key as the platform stores it"
        ) from None
    if found[0] != 1:
        raise TenantError(
            f"tenant {tenant!r} has no person {person!r} in {scope.table} (its key "
            f"{scope.key}): check the reference with the client's administrator"
        )
    return found


def person_keys(
    scope: PersonScope, catalog: list[CatalogTable]
) -> frozenset[tuple[str, tuple[str, ...]]]:
    """The keys to the person table, as (table, columns), whose person column the erasure
    clears, reassigns or keeps by its rule before any delete (see `PersonScope.link_rules`):
    none of them blocks the person's row."""
    ruled = {(table, column) for table, column, _ in scope.link_rules()}
    return frozenset(
        (t.qualified, fk.columns)
        for t in catalog
        for fk in t.foreign_keys
        if fk.references == scope.table
        and (t.qualified, _person_column(scope, t.qualified, fk)) in ruled
    )
