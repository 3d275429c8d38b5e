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

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import PgColumn
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.core.names import split_qualified
from offboarding.datamap import PersonScope, datamap_of, platform_shape
from offboarding.locations.base import PersonItems
from offboarding.locations.postgres.catalog import classify, ident
from offboarding.locations.postgres.scope import Scope, measure
from offboarding.locations.prefixed import digest_object
from offboarding.planning import CatalogTable, Classification
from offboarding.stores import ObjectStore, open_store

__all__ = [
    "PersonSelection",
    "count_person",
    "person_conditions",
    "person_files",
    "require_person",
]

_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})


def _column_kinds(columns: dict[str, Any], table: str) -> dict[str, tuple[str, bool]]:
    return {c.name: (c.type_name, c.not_null) for c in columns[table]}


def _check_scope(
    scope: PersonScope,
    tables: list[CatalogTable],
    columns: dict[str, Any],
    owned: set[str],
    where: str,
) -> None:
    """Fail closed: the person table and every declared column exist, every foreign key to
    the person table is declared, and each kept row's personal columns can be replaced."""
    if scope.table not in columns:
        raise ConfigurationError(
            f"{where}: [person] table {scope.table!r} is not a table of the platform database: "
            "name the schema.table of the platform's people"
        )
    if scope.table not in owned:
        raise ConfigurationError(
            f"{where}: [person] table {scope.table} holds no tenant rows (no tenant column, no "
            "foreign key to the tenant's rows): a person must belong to one tenant"
        )
    if scope.table in scope.tables:  # the data map refuses it too; never trusted here
        raise ConfigurationError(
            f"{where}: [person.tables] names the person table {scope.table} itself: its rows "
            f"are selected by its key {scope.key!r} alone. Remove that entry"
        )
    declared = {scope.table: scope.key, **{t: p.by for t, p in scope.tables.items()}}
    for table, column in declared.items():
        if table not in columns:
            raise ConfigurationError(
                f"{where}: [person.tables] names {table!r}, which is not a table of the "
                "platform database: fix its schema.table name"
            )
        if table not in owned:
            raise ConfigurationError(
                f"{where}: [person.tables] names {table}, which holds no tenant rows"
            )
        kinds = _column_kinds(columns, table)
        person_table = scope.tables.get(table)
        named = [column, *(person_table.personal if person_table else scope.personal)]
        named += person_table.files if person_table else []
        for name in named:
            if name not in kinds:
                raise ConfigurationError(
                    f"{where}: {table} has no column {name!r}: fix the [person] entry"
                )
    for catalog_table in tables:
        referencing = catalog_table.qualified
        for fk in catalog_table.foreign_keys:
            if fk.references != scope.table or referencing == scope.table:
                continue
            entry = scope.tables.get(referencing)
            if entry is None or (entry.by,) != fk.columns:
                raise ConfigurationError(
                    f"{where}: {referencing}.{', '.join(fk.columns)} points at "
                    f"{scope.table} (foreign key {fk.name}) but [person.tables] does not "
                    f'declare it: add [person.tables."{referencing}"] with by = '
                    f'"{fk.columns[0]}" and erase = "delete" or "pseudonymise", so a '
                    "person's rows there are not left behind"
                )
    kept = [(t, p.personal) for t, p in scope.tables.items() if p.erase == "pseudonymise"]
    if scope.erase == "pseudonymise":
        kept.append((scope.table, scope.personal))
    for table, personal in kept:
        kinds = _column_kinds(columns, table)
        for name in personal:
            type_name, not_null = kinds[name]
            if not_null and type_name not in _TEXT_TYPES:
                raise ConfigurationError(
                    f"{where}: {table}.{name} is NOT NULL and not text, so a kept row's value "
                    'cannot be replaced: erase the rows (erase = "delete"), or allow NULL'
                )
    if scope.erase == "delete":
        for table, entry in scope.tables.items():
            if entry.erase == "pseudonymise" and _not_null(columns, table, entry.by):
                raise ConfigurationError(
                    f"{where}: {table}.{entry.by} is NOT NULL, so a kept row cannot lose its "
                    f"reference to the deleted person: keep the person's row (erase = "
                    f'"pseudonymise" under [person]) or delete these rows'
                )


def _not_null(columns: dict[str, Any], table: str, column: str) -> bool:
    return bool(_column_kinds(columns, table)[column][1])


@dataclass(frozen=True)
class PersonSelection:
    """Where one person's rows are, within the tenant: per table (the person table first,
    then each declared one) the condition selecting them, with the catalogue it was checked
    against. Columns in a condition are qualified by their table's name."""

    conditions: dict[str, sql.Composable]
    classification: Classification
    tables: dict[str, CatalogTable]
    columns: dict[str, list[PgColumn]]
    catalog: list[CatalogTable]  # every table of the database, for the references to them


def person_conditions(
    conn: psycopg.Connection[Any], settings: Settings, scope: PersonScope, tenant: str, person: str
) -> PersonSelection:
    """The person's rows in each table of the scope, after checking the scope against the
    catalogue (fail closed: see `_check_scope`)."""
    classification, tables, columns = classify(conn, settings)
    where = datamap_of(settings).source
    _check_scope(scope, tables, columns, set(classification.owned), where)
    tenant_scope = Scope(classification, tenant, platform_shape(settings).shared_rows)
    key = sql.Literal(person)
    conditions: dict[str, sql.Composable] = {}
    for table, column in [(scope.table, scope.key), *((t, p.by) for t, p in scope.tables.items())]:
        schema, name = split_qualified(table)
        pg_type = next(c.pg_type for c in columns[table] if c.name == column)
        # The key cast to the column's own type, so the column's index serves the condition.
        conditions[table] = sql.SQL("({tenant} AND {col} = {key}::{type})").format(
            tenant=tenant_scope.where(table),
            col=sql.Identifier(schema, name, column),
            key=key,
            type=sql.SQL(pg_type),
        )
    by_name = {t.qualified: t for t in tables}
    return PersonSelection(
        conditions=conditions,
        classification=classification,
        tables={name: by_name[name] for name in conditions},
        columns={name: columns[name] for name in conditions},
        catalog=tables,
    )


def person_files(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    conditions: dict[str, sql.Composable],
    files: ObjectStore,
    tenant: str,
    person: str,
    *,
    missing_ok: bool = False,
) -> list[str]:
    """The person's objects in the files store: the keys their rows name, and their own files
    (the [person] files keys), each under the tenant's prefix and present. A named object that
    is missing stops an answer (it would be incomplete), unless `missing_ok` (an erasure: gone
    is what it wants, e.g. after a failed commit that had deleted the files)."""
    keys: set[str] = set()
    for table, entry in scope.tables.items():
        for column in entry.files:
            keys.update(
                str(r[0])
                for r in conn.execute(
                    sql.SQL("SELECT DISTINCT {c} FROM {t} WHERE {w} AND {c} IS NOT NULL").format(
                        c=sql.Identifier(column), t=ident(table), w=conditions[table]
                    )
                )
            )
    prefix = f"tenants/{tenant}/"
    outside = sorted(k for k in keys if not k.startswith(prefix))
    if outside:
        raise TenantError(
            f"{len(outside)} object(s) named by the person's rows are outside tenant "
            f"{tenant!r}'s prefix {prefix}: a person request touches only the tenant's files; "
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


def count_person(settings: Settings, scope: PersonScope, tenant: str, person: str) -> PersonItems:
    """The person's rows per table (the person table first) and their objects, counted in one
    read-only snapshot. Stops if the person is not a person of the tenant, or the data map
    leaves a reference to the person table undeclared."""
    files = open_store(settings.store_url("files"))
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    with psycopg.connect(settings.require_database()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            conditions = person_conditions(conn, settings, scope, tenant, person).conditions
            counts[scope.table], sizes[scope.table] = require_person(
                conn, scope, conditions, tenant, person
            )
            for table in scope.tables:
                counts[table], sizes[table] = measure(conn, table, conditions[table])
            keys = person_files(conn, scope, conditions, files, tenant, person)
    return PersonItems(
        counts=counts,
        sizes=sizes,
        objects=len(keys),
        object_bytes=sum(digest_object(files, k)[0] for k in keys),
    )
