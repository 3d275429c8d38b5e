"""A listed reply thread ordered by depth, deepest first (deletion.py's lists, where keys are
not serial or replies point at another column than the key)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from offboarding.locations.postgres.listing import names as _names
from offboarding.locations.postgres.listing import row as _row

__all__ = ["order_by_depth"]


def order_by_depth(
    conn: psycopg.Connection[Any], temp_name: str, keys: int, width: int, pointed: str
) -> int:
    """Renumber `ord` of a listed reply thread by depth, deepest first: roots (no listed parent)
    have depth 0, their replies 1, and so on. Rows never reached are in a reference cycle (or
    hang below one): they go together, in one last statement. `pointed`: the prefix of the
    columns a reply points at ("k" where they are the key). Returns the rows in cycles."""
    temp, staged = sql.Identifier(temp_name), sql.Identifier(f"{temp_name}_rows")
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(temp, staged))
    for prefix in (pointed, "s"):
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(staged, _names(prefix, width)))
    conn.execute(sql.SQL("ANALYZE {}").format(staged))
    k = _names("k", keys)
    query = sql.SQL(
        "WITH RECURSIVE tree AS ("
        " SELECT {dk}, {dr}, 0 AS depth FROM {s} d"
        " WHERE {dnull} OR NOT EXISTS (SELECT 1 FROM {s} p WHERE {pr} = {ds})"
        " UNION ALL"
        " SELECT {ck}, {cr}, t.depth + 1 FROM tree t JOIN {s} c ON {cs} = {tr}"
        "), depth AS (SELECT {k}, max(depth) AS depth FROM tree GROUP BY {k}) "
        "SELECT {k}, row_number() OVER (ORDER BY t.depth DESC NULLS LAST, {k}) "
        "AS ord, t.depth IS NULL AS cyclic FROM {s} d LEFT JOIN depth t USING ({k})"
    ).format(
        s=staged, k=k,
        dk=_names("k", keys, "d"), dr=_names(pointed, width, "d", "r"),
        dnull=sql.SQL(" OR ").join(
            sql.SQL("{} IS NULL").format(sql.Identifier("d", f"s{n}")) for n in range(width)
        ),
        pr=_row(pointed, width, "p"), ds=_row("s", width, "d"),
        ck=_names("k", keys, "c"), cr=_names(pointed, width, "c", "r"),
        cs=_row("s", width, "c"), tr=_row("r", width, "t"),
    )  # fmt: skip
    conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} AS ").format(temp) + query)
    conn.execute(sql.SQL("DROP TABLE {}").format(staged))
    row = conn.execute(sql.SQL("SELECT count(*) FILTER (WHERE cyclic) FROM {}").format(temp))
    return int(row.fetchone()[0])  # type: ignore[index]
