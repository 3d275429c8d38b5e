"""`offboard datamap check` for the platform's PostgreSQL database: everything the inventory will
need, checked before any case needs it. The tenants table's columns; every table and column
the shape names (owner columns, global, excluded and file columns, shared rows: the
classification and the file columns' own checks); each declared
reference against the catalogue (tables, columns, comparable types, none values of the
column's type) and against the data (orphans, rows reaching two tenants). Read-only."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.core.names import split_qualified
from offboarding.datamap import datamap_of, platform_shape
from offboarding.locations.postgres.catalog import classify
from offboarding.locations.postgres.files import file_columns
from offboarding.locations.postgres.scope import Scope
from offboarding.locations.relational.declared import check_declared
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


def check_platform(conn: psycopg.Connection[Any], settings: Settings) -> list[str]:
    """What the inventory will need, checked; lines for the check's report. Raises with the
    fix at the first thing that would stop a case."""
    _tenant_columns(conn, settings)
    classification, tables, _ = classify(conn, settings, strict=True)
    scope = Scope(classification, "", platform_shape(settings).shared_rows)
    file_columns(conn, settings, scope)  # each a column of a tenant table, or the fix

    def fetch(query: sql.Composable) -> tuple[object, ...]:
        try:
            with conn.transaction():
                row = conn.execute(sql.Composed([query])).fetchone()
        except psycopg.errors.Error as error:
            raise _unusable(error) from None
        assert row is not None
        return tuple(row)

    checks = check_declared(scope, tables, fetch)
    lines = [
        f"{len(classification.owned)} tables of tenants' rows, "
        f"{len(classification.global_tables)} global, {len(classification.excluded)} excluded"
    ]
    lines += [f"reference {c.describe()}" for c in checks]
    return lines


def _unusable(error: psycopg.errors.Error) -> ConfigurationError:
    message = str(error).strip().splitlines()[0]
    return ConfigurationError(
        f"PostgreSQL cannot compare the columns or the none values as declared ({message}): "
        "the child's columns must have the parent's key's types (or types PostgreSQL compares "
        "with them), and each none value must be one the columns can hold"
    )
