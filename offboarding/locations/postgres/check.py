"""`offboard datamap check` for the platform's PostgreSQL database: everything the inventory will
need, checked before any case needs it. The tenants table's columns; every table and column
the shape names (owner columns, global, excluded and file columns, shared rows); each declared
reference against the catalogue (tables, columns, comparable types, none values of the
column's type) and against the data (orphans, rows reaching two tenants). Read-only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.core.names import qualified, split_qualified
from offboarding.datamap import datamap_of, platform_shape
from offboarding.locations.postgres.catalog import classify
from offboarding.locations.postgres.scope import Scope
from offboarding.locations.relational.declared import DeclaredCheck, check_declared
from offboarding.planning import CatalogTable, ForeignKey
from offboarding.registry import registry_table

__all__ = ["check_platform"]


def _tenant_columns(conn: psycopg.Connection[Any], settings: Settings) -> None:
    table = registry_table(settings)
    mapping = datamap_of(settings).tenants
    schema, name = split_qualified(table)
    present = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, name),
        )
    }
    named = {
        "id": mapping.id, "name": mapping.name, "region": mapping.region,
        "contact": mapping.contact, "recipient": mapping.recipient,
    }  # fmt: skip
    missing = [
        f"{field} = {column!r}"
        for field, column in named.items()
        if column and column not in present
    ]
    if missing:
        raise ConfigurationError(
            f"the data map's [tenants] names columns {table} does not have: {', '.join(missing)} "
            f"(it has {', '.join(sorted(present))}). Fix each name, or write `false` for one the "
            "table does not have (name, region, contact, recipient are optional)"
        )


def _file_columns(settings: Settings, columns: dict[str, list[Any]]) -> None:
    for reference in platform_shape(settings).file_columns:
        schema, table, column = split_qualified(reference, 3)
        found = columns.get(qualified(schema, table))
        if found is None or column not in {c.name for c in found}:
            raise ConfigurationError(
                f"file_columns names {reference}, which the database does not have: "
                "fix it (schema.table.column)"
            )


def check_platform(conn: psycopg.Connection[Any], settings: Settings) -> list[str]:
    """What the inventory will need, checked; lines for the check's report. Raises with the
    fix at the first thing that would stop a case."""
    _tenant_columns(conn, settings)
    classification, tables, columns = classify(conn, settings, strict=True)
    _file_columns(settings, columns)
    scope = Scope(classification, "", platform_shape(settings).shared_rows)

    def fetch(query: sql.Composable) -> tuple[object, ...]:
        try:
            with conn.transaction():
                row = conn.execute(sql.Composed([query])).fetchone()
        except psycopg.errors.Error as error:
            raise _unusable(error) from None
        assert row is not None
        return tuple(row)

    checks: list[DeclaredCheck] = []
    for table in tables:
        for fk in (f for f in table.foreign_keys if f.declared):
            try:
                checks += check_declared(scope, [_only(table, fk)], fetch)
            except ConfigurationError as error:
                raise ConfigurationError(
                    f"the data map's reference {fk.name.removeprefix('declared ')}: {error}"
                ) from None
    lines = [
        f"{len(classification.owned)} tables of tenants' rows, "
        f"{len(classification.global_tables)} global, {len(classification.excluded)} excluded"
    ]
    lines += [f"reference {c.describe()}" for c in checks]
    return lines


def _only(table: CatalogTable, fk: ForeignKey) -> CatalogTable:
    return replace(table, foreign_keys=(fk,))


def _unusable(error: psycopg.errors.Error) -> ConfigurationError:
    message = str(error).strip().splitlines()[0]
    return ConfigurationError(
        f"PostgreSQL cannot compare the columns or the none values as declared ({message}): "
        "the child's columns must have the parent's key's types (or types PostgreSQL compares "
        "with them), and each none value must be one the columns can hold"
    )
