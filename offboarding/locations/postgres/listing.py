"""The numbered columns of the destruction's temporary lists (k0, k1, ...)."""

from __future__ import annotations

from psycopg import sql

__all__ = ["names", "row"]


def names(
    prefix: str, count: int, alias: str | None = None, named: str | None = None
) -> sql.Composed:
    """k0, k1, ... (or alias.k0, ...): the numbered columns of a temporary table; `named`, each
    given that prefix as its name (k0 AS r0, ...)."""
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(
            sql.Identifier(*((alias,) if alias else ()), f"{prefix}{n}"),
            sql.Identifier(f"{named}{n}"),
        )
        if named
        else sql.Identifier(*((alias,) if alias else ()), f"{prefix}{n}")
        for n in range(count)
    )


def row(prefix: str, count: int, alias: str) -> sql.Composed:
    return sql.SQL("({})").format(names(prefix, count, alias))
