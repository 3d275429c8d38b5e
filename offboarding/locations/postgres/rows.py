"""Deleting or changing some of a tenant's rows in place, provably: the person's rows of an
erasure, the rows past a retention rule's period.

The rows are marked first (their primary keys in a temporary table, gone at commit), so they
stay known after a change; what references them from outside is counted before anything
changes; and every statement must affect exactly the rows counted, or the transaction is
abandoned. Conditions qualify columns with the table's full name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.errors import DestructionIncompleteError, TenantError
from offboarding.core.names import split_qualified
from offboarding.locations.postgres.catalog import ident
from offboarding.planning import CatalogTable

__all__ = [
    "Reference",
    "affect",
    "count_rows",
    "lock_rows",
    "mark_rows",
    "references_into",
    "references_now",
]


@dataclass(frozen=True)
class Reference:
    """Rows outside the doomed ones that reference doomed rows, through one foreign key."""

    table: str  # the referencing table
    columns: tuple[str, ...]
    constraint: str
    references: str  # the doomed rows' table
    rows: int

    def __str__(self) -> str:
        return (
            f"{self.rows} row(s) of {self.table} ({self.constraint}: {', '.join(self.columns)}) "
            f"reference the rows of {self.references} to be deleted"
        )


def references_into(
    conn: psycopg.Connection[Any],
    catalog: list[CatalogTable],
    doomed: Mapping[str, sql.Composable],
    exempt: frozenset[tuple[str, tuple[str, ...]]] = frozenset(),
) -> list[Reference]:
    """Rows outside `doomed` that reference a doomed row: deleting it would cascade to them,
    change them (set null) or be refused. One per foreign key, with a count (no value).
    `exempt` names (table, columns) references cleared before the delete."""
    found: list[Reference] = []
    for referencing in catalog:
        name = referencing.qualified
        for fk in referencing.foreign_keys:
            if fk.references not in doomed or (name, fk.columns) in exempt:
                continue
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {r} WHERE ({cols}) IN (SELECT {refcols} FROM {t} "
                    "WHERE {cond}) AND NOT coalesce({own}, false)"
                ).format(
                    r=ident(name),
                    cols=sql.SQL(", ").join(sql.Identifier(c) for c in fk.columns),
                    refcols=sql.SQL(", ").join(sql.Identifier(c) for c in fk.referenced_columns),
                    t=ident(fk.references),
                    cond=doomed[fk.references],
                    own=doomed.get(name, sql.SQL("FALSE")),
                )
            ).fetchone()
            if row and row[0]:
                found.append(Reference(name, fk.columns, fk.name, fk.references, int(row[0])))
    return found


def references_now(
    dsn: str,
    catalog: list[CatalogTable],
    doomed: Mapping[str, sql.Composable],
    exempt: frozenset[tuple[str, tuple[str, ...]]] = frozenset(),
) -> list[Reference]:
    """`references_into` as committed now, on a connection of its own: call it once the doomed
    rows are locked (`lock_rows`), so no new reference can appear. A reference written since
    the deleting transaction's snapshot is then refused with its table and foreign key, as any
    other, instead of surfacing as PostgreSQL's serialization failure at the delete."""
    with psycopg.connect(dsn, autocommit=True) as fresh:
        return references_into(fresh, catalog, doomed, exempt)


def lock_rows(conn: psycopg.Connection[Any], table: str, where: sql.Composable) -> None:
    """Lock the rows about to be deleted: a row that would reference one (a foreign key takes
    a key-share lock on it) waits until the transaction ends."""
    conn.execute(sql.SQL("SELECT 1 FROM {} WHERE {} FOR UPDATE").format(ident(table), where))


def mark_rows(
    conn: psycopg.Connection[Any],
    tables: Mapping[str, CatalogTable],
    conditions: Mapping[str, sql.Composable],
) -> dict[str, sql.Composable]:
    """Note the primary key of every row matching each table's condition; return, per table,
    the condition matching the marked rows."""
    marked: dict[str, sql.Composable] = {}
    for number, (table, condition) in enumerate(conditions.items()):
        keys = tables[table].primary_key
        if not keys:
            raise TenantError(
                f"{table} has no primary key: its rows cannot be told apart once changed. Give "
                "the table a primary key"
            )
        schema, name = split_qualified(table)
        temp = sql.Identifier(f"offboarding_marked_rows_{number}")
        columns = sql.SQL(", ").join(sql.Identifier(schema, name, k) for k in keys)
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {cols} FROM {t} WHERE {w}")
            .format(temp=temp, cols=columns, t=ident(table), w=condition)
        )  # fmt: skip
        conn.execute(sql.SQL("ANALYZE {}").format(temp))  # true sizes: index lookups, no scan
        marked[table] = sql.SQL("(({cols}) IN (SELECT * FROM {temp}))").format(
            cols=columns, temp=temp
        )
    return marked


def count_rows(conn: psycopg.Connection[Any], table: str, where: sql.Composable) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident(table), where)
    ).fetchone()
    return int(row[0]) if row else 0


def affect(conn: psycopg.Connection[Any], statement: sql.Composed, expected: int, what: str) -> int:
    """Run an UPDATE or DELETE that must change exactly `expected` rows (else the transaction
    is abandoned: nothing changes)."""
    affected = int(conn.execute(statement).rowcount)
    if affected != expected:
        raise DestructionIncompleteError(
            f"{what}: {affected} row(s) changed where {expected} were counted; nothing was "
            "changed. Retry"
        )
    return affected
