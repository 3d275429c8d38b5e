"""The objects of the files store that rows name: each value of the data map's file columns
(`[systems.postgres] file_columns`), read from the tenant's rows, or from everyone else's."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.core.names import qualified, split_qualified
from offboarding.datamap import platform_shape
from offboarding.locations.postgres.catalog import ident, read_catalog
from offboarding.locations.postgres.scope import Scope

__all__ = ["file_columns", "objects_of"]


def file_columns(
    conn: psycopg.Connection[Any], settings: Settings, scope: Scope
) -> list[tuple[str, str]]:
    """(table, column) of every column holding object keys, each a column of a tenant table."""
    _, columns = read_catalog(conn)
    owned = set(scope.classification.exported)
    found = []
    shape = platform_shape(settings)
    stray = sorted(set(shape.file_none) - set(shape.file_columns))
    if stray:
        raise ConfigurationError(
            f"file_none names {', '.join(stray)}, which file_columns does not list: a none "
            "value belongs to a file column; add the column to file_columns or drop it"
        )
    for reference in shape.file_columns:
        schema, name, column = split_qualified(reference, 3)
        table = qualified(schema, name)
        if table not in owned or column not in {c.name for c in columns.get(table, [])}:
            raise ConfigurationError(
                f"file_columns (formerly OFFBOARD_FILE_REFERENCE_COLUMNS) names {reference!r}, "
                "which is not a column of a tenant-owned table: fix it to schema.table.column"
            )
        found.append((table, column))
    return found


def objects_of(
    conn: psycopg.Connection[Any],
    settings: Settings,
    scope: Scope,
    others_of: set[str] | None = None,
) -> set[str]:
    """The keys the tenant's rows name; with `others_of`, which of those keys rows outside the
    tenant's scope name too. An empty value names no object (products write '' for none), nor
    do the column's declared none values (`file_none`)."""
    keys: set[str] = set()
    shape = platform_shape(settings)
    for table, column in file_columns(conn, settings, scope):
        c, t, w = sql.Identifier(column), ident(table), scope.where(table)
        if others_of is None:
            query = sql.SQL(
                "SELECT DISTINCT {c} FROM {t} WHERE {w} AND {c} IS NOT NULL AND {c} <> ALL(%s)"
            ).format(c=c, t=t, w=w)
            none = shape.no_object(f"{table}.{column}")
            keys.update(str(r[0]) for r in conn.execute(query, (none,)))
        else:
            query = sql.SQL(
                "SELECT DISTINCT {c} FROM {t} WHERE {c} = ANY(%s) AND ({w}) IS NOT TRUE"
            ).format(c=c, t=t, w=w)
            keys.update(str(r[0]) for r in conn.execute(query, (sorted(others_of),)))
    return keys
