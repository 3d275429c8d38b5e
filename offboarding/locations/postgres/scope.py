"""Which rows of a table are the tenant's: the condition for any table that holds some (tenant
column, foreign keys to the tenant's rows at any depth, the tenant's own schema, the registry),
and what those rows count and weigh.

A row of a derived table (no tenant column) is the tenant's when its foreign keys reach the
tenant's rows and no other tenant's: every key that is set points at a row of the tenant. A
row whose keys reach the tenant and another tenant at once is *shared* (a neighbour's post
mentioning one of ours): it is neither the tenant's to export nor to destroy, and a case
stops on it unless `OFFBOARD_SHARED_ROWS` says, for its table, to leave it, delete it with the
tenant, or export it without destroying it.

Conditions are correlated subqueries (EXISTS on the parent's key), so the planner reaches
the tenant's rows through indexes and never needs to read another tenant's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import psycopg
from psycopg import sql

from offboarding.core.errors import ConfigurationError
from offboarding.core.names import split_qualified
from offboarding.locations.postgres.catalog import ident
from offboarding.planning import Classification, ForeignKey

__all__ = ["Scope", "SharedRows", "digest_query", "measure", "scope_kind"]

SharedRows = Literal["leave", "delete", "export"]


class Scope:
    """Builds, for any table holding the tenant's rows, the condition that selects them. The
    tenant id is a literal quoted by the driver, so the condition works on any connection.

    `alias` names the table in the query the condition goes into; without one, columns are
    qualified with the table's full name (a FROM without an alias)."""

    def __init__(
        self,
        classification: Classification,
        tenant: str,
        shared: Mapping[str, SharedRows] | None = None,
    ) -> None:
        self.classification = classification
        self.tenant = sql.Literal(tenant)
        self.shared: dict[str, SharedRows] = dict(shared or {})
        for table in self.shared:
            if len(classification.derived.get(table, ())) < 2:
                raise ConfigurationError(
                    f"shared_rows (formerly OFFBOARD_SHARED_ROWS) names {table!r}, which is not a "
                    "table whose rows reach tenants through two or more foreign keys (only such "
                    "rows can be shared): remove it, or fix its schema.table name"
                )

    def _column(self, table: str, alias: str | None, column: str) -> sql.Identifier:
        if alias:
            return sql.Identifier(alias, column)
        schema, name = split_qualified(table)
        return sql.Identifier(schema, name, column)

    def _columns(self, table: str, alias: str | None, columns: tuple[str, ...]) -> sql.Composed:
        return sql.SQL("({})").format(
            sql.SQL(", ").join(self._column(table, alias, c) for c in columns)
        )

    def _reaches(self, table: str, alias: str | None, fk: ForeignKey, depth: int) -> sql.Composed:
        """The row's key `fk` points at a row the tenant's destruction removes."""
        parent = f"p{depth}"
        return sql.SQL("EXISTS (SELECT 1 FROM {t} {p} WHERE {ref} = {cols} AND {cond})").format(
            t=ident(fk.references),
            p=sql.Identifier(parent),
            ref=self._columns(fk.references, parent, fk.referenced_columns),
            cols=self._columns(table, alias, fk.columns),
            cond=self._destroyed(fk.references, parent, depth + 1),
        )

    def _elsewhere(self, table: str, alias: str | None, fk: ForeignKey, depth: int) -> sql.Composed:
        """The row's key `fk` is set and points at a row that is not the tenant's."""
        return sql.SQL("({set} AND NOT {reaches})").format(
            set=sql.SQL(" AND ").join(
                sql.SQL("{} IS NOT NULL").format(self._column(table, alias, c)) for c in fk.columns
            ),
            reaches=self._reaches(table, alias, fk, depth),
        )

    def _derived(
        self, table: str, alias: str | None, depth: int, kind: Literal["own", "shared"]
    ) -> sql.Composable:
        links = self.classification.derived[table]
        touches = sql.SQL("({})").format(
            sql.SQL(" OR ").join(self._reaches(table, alias, fk, depth) for fk in links)
        )
        if len(links) == 1:  # one route: a row that reaches the tenant is the tenant's
            return touches if kind == "own" else sql.SQL("FALSE")
        other = sql.SQL(" OR ").join(self._elsewhere(table, alias, fk, depth) for fk in links)
        return sql.SQL("({} AND {}({}))").format(
            touches, sql.SQL("NOT " if kind == "own" else ""), other
        )

    def _destroyed(self, table: str, alias: str | None, depth: int) -> sql.Composable:
        c = self.classification
        if table == c.registry:
            return sql.SQL("{} = {}").format(self._column(table, alias, "id"), self.tenant)
        if table in c.schema_tables:
            return sql.SQL("TRUE")  # the whole table is in the tenant's own schema
        if table in c.tenant_scoped:
            return sql.SQL("{} = {}").format(
                self._column(table, alias, c.tenant_column), self.tenant
            )
        own = self._derived(table, alias, depth, "own")
        if self.shared.get(table) != "delete":
            return own
        return sql.SQL("({} OR {})").format(own, self._derived(table, alias, depth, "shared"))

    def where(self, table: str, alias: str | None = None) -> sql.Composable:
        """The rows exported as the tenant's: its own, and shared rows where the table's
        policy is 'export'."""
        if self.shared.get(table) == "export":
            return sql.SQL("({} OR {})").format(
                self._derived(table, alias, 0, "own"), self.shared_rows(table, alias)
            )
        if self.shared.get(table) == "delete":
            return self._derived(table, alias, 0, "own")
        return self._destroyed(table, alias, 0)

    def destroyed(self, table: str, alias: str | None = None) -> sql.Composable:
        """The rows destruction removes: its own, and shared rows where the table's policy is
        'delete'."""
        return self._destroyed(table, alias, 0)

    def shared_rows(self, table: str, alias: str | None = None) -> sql.Composable:
        """Rows reaching the tenant's rows and another tenant's at once (FALSE for a table
        whose rows have a single route to a tenant)."""
        if table not in self.classification.derived:
            return sql.SQL("FALSE")
        return self._derived(table, alias, 0, "shared")

    def may_share(self, table: str) -> bool:
        return len(self.classification.derived.get(table, ())) > 1


def scope_kind(
    classification: Classification, table: str
) -> Literal["tenant", "derived", "registry", "schema"]:
    if table == classification.registry:
        return "registry"
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
