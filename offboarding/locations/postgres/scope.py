"""Which rows of a table are the tenant's: the WHERE clause for any table that holds some
(tenant column, foreign keys to the tenant's rows at any depth, the tenant's own schema, the
registry), and what those rows count and weigh."""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg import sql

from offboarding.locations.postgres.catalog import column_list, ident
from offboarding.planning import Classification

__all__ = ["Scope", "digest_query", "measure", "scope_kind"]


class Scope:
    """Builds, for any table holding the tenant's rows, the WHERE clause that selects them.
    The tenant id is a literal quoted by the driver, so the clause works on any connection."""

    def __init__(self, classification: Classification, tenant: str) -> None:
        self.classification = classification
        self.tenant = sql.Literal(tenant)

    def where(self, table: str) -> sql.Composable:
        c = self.classification
        if table == c.registry:
            return sql.SQL("{} = {}").format(sql.Identifier("id"), self.tenant)
        if table in c.schema_tables:
            return sql.SQL("TRUE")  # the whole table is in the tenant's own schema
        if table in c.tenant_scoped:
            return sql.SQL("{} = {}").format(sql.Identifier(c.tenant_column), self.tenant)
        links = c.derived[table]
        return sql.SQL("({})").format(
            sql.SQL(" OR ").join(
                sql.SQL("{cols} IN (SELECT {ref} FROM {parent} WHERE {cond})").format(
                    cols=column_list(fk.columns),
                    ref=sql.SQL(", ").join(sql.Identifier(x) for x in fk.referenced_columns),
                    parent=ident(fk.references),
                    cond=self.where(fk.references),
                )
                for fk in links
            )
        )


def scope_kind(
    classification: Classification, table: str
) -> Literal["tenant", "derived", "registry", "schema"]:
    if table == classification.registry:
        return "registry"
    if table in classification.schema_tables:
        return "schema"
    return "tenant" if table in classification.tenant_scoped else "derived"


def digest_query(table: str, where: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "SELECT coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM {} x WHERE {}"
    ).format(ident(table), where)


def measure(conn: psycopg.Connection[Any], scope: Scope, table: str) -> tuple[int, int]:
    """Rows of the tenant in `table`, and the bytes those rows take."""
    row = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum(pg_column_size(x.*)), 0) FROM {} x WHERE {}").format(
            ident(table), scope.where(table)
        )
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
