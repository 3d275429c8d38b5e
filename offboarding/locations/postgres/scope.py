"""Which rows of a table are the tenant's, in PostgreSQL: the relational core's scope
(offboarding/locations/relational/scope.py says which rows those are) through PostgreSQL's
dialect, and what those rows count and weigh."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import psycopg
from psycopg import sql

from offboarding.core.names import split_qualified
from offboarding.locations.postgres.catalog import ident
from offboarding.locations.relational.scope import RelationalScope, SharedRows
from offboarding.planning import Classification

__all__ = ["PostgresDialect", "Scope", "SharedRows", "digest_query", "measure", "scope_kind"]


class PostgresDialect:
    """PostgreSQL's pieces of a condition: psycopg's composed SQL, identifiers quoted by the
    driver, the tenant id a literal the driver quotes (the condition works on any connection)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = sql.Literal(tenant)

    def text(self, text: str) -> sql.Composable:
        return sql.SQL(text)  # the pipeline's own SQL, never input

    def fill(self, template: str, **parts: sql.Composable) -> sql.Composable:
        return sql.SQL(template).format(**parts)

    def join(self, parts: Iterable[sql.Composable], separator: str) -> sql.Composable:
        return sql.SQL(separator).join(list(parts))

    def table(self, qualified: str) -> sql.Composable:
        return ident(qualified)

    def column(self, table: str, alias: str | None, column: str) -> sql.Composable:
        if alias:
            return sql.Identifier(alias, column)
        schema, name = split_qualified(table)
        return sql.Identifier(schema, name, column)

    def alias(self, name: str) -> sql.Composable:
        return sql.Identifier(name)

    def value(self, value: str | int) -> sql.Composable:
        # As an untyped literal, which PostgreSQL reads as the column's type ('0' for an
        # integer column, '' for a text one).
        return sql.Literal(str(value))

    def pseudonym(self, key: sql.Composable) -> sql.Composable:
        return sql.SQL("'erased-' || md5(ROW{}::text)").format(key)

    def is_tenant(self, column: sql.Composable) -> sql.Composable:
        return sql.SQL("{} = {}").format(column, self.tenant)

    def number(self, value: int) -> sql.Composable:
        return sql.Literal(int(value))

    def distinct(self, left: sql.Composable, right: sql.Composable) -> sql.Composable:
        return sql.SQL("{} IS DISTINCT FROM {}").format(left, right)

    def owners(self, column: sql.Composable | None) -> sql.Composable:
        if column is None:
            return sql.SQL("'{}'::text[]")
        return sql.SQL("array_agg(DISTINCT {})").format(column)

    def owner_values(self, value: Any) -> tuple[str, ...]:
        return tuple(sorted({str(t) for t in value or () if t}))


class Scope(RelationalScope[sql.Composable]):
    """The relational core's scope (offboarding/locations/relational/scope.py) in PostgreSQL."""

    def __init__(
        self,
        classification: Classification,
        tenant: str,
        shared: Mapping[str, SharedRows] | None = None,
    ) -> None:
        self.postgres = PostgresDialect(tenant)
        super().__init__(classification, self.postgres, shared)


def scope_kind(
    classification: Classification, table: str
) -> Literal["tenant", "derived", "registry", "schema", "entity"]:
    if table == classification.registry:
        return "registry"
    if table in classification.entities:
        return "entity"
    if table in classification.schema_tables:
        return "schema"
    return "tenant" if table in classification.tenant_scoped else "derived"


def digest_query(table: str, where: sql.Composable) -> sql.Composed:
    """`where` must qualify columns with the table's full name (no alias)."""
    return sql.SQL(
        "SELECT coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
        "FROM (SELECT {t}.* FROM {t} WHERE {w}) AS x"
    ).format(t=ident(table), w=where)


def measure(conn: psycopg.Connection[Any], table: str, where: sql.Composable) -> tuple[int, int]:
    """Rows of `table` that `where` (written without an alias) selects, and their bytes."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(pg_column_size({t}.*)), 0) FROM {t} WHERE {w}"
        ).format(t=ident(table), w=where)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
