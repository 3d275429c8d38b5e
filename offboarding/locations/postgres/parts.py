"""An export's parts planned in the leader's snapshot: one job per table, or several for a large
one (key ranges, or block ranges read in physical order), each a rendered query and its
columns' Parquet plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import psycopg
from psycopg import sql

from exporters.parquet import ColumnPlan, PgColumn, plan_column, select_query
from offboarding.core.config import Settings
from offboarding.core.names import table_folder
from offboarding.core.records import TableItem
from offboarding.locations.postgres.catalog import ident
from offboarding.locations.postgres.scope import Scope

__all__ = ["ExportJob", "array_dimensions", "mostly_distinct", "plan_jobs"]


@dataclass(frozen=True)
class ExportJob:
    """What one part reads: rendered SQL and the columns' Parquet plans (picklable)."""

    table: str
    relative: str
    plans: list[ColumnPlan]
    query: str
    physical: bool = False  # rows in physical order: only scans that keep it are allowed


def array_dimensions(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[PgColumn],
    where: sql.Composable,
) -> dict[str, int]:
    """Largest array_ndims of each array column over the selected rows."""
    arrays = [c for c in columns if c.element_type]
    if not arrays:
        return {}
    row = conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(
                sql.SQL("coalesce(max(array_ndims({})), 1)").format(sql.Identifier(c.name))
                for c in arrays
            ),
            table,
            where,
        )
    ).fetchone()
    return {c.name: int(n) for c, n in zip(arrays, row or (), strict=True)}


def mostly_distinct(conn: psycopg.Connection[Any], item: TableItem) -> set[str]:
    """Columns whose values the planner's statistics say are mostly distinct (no statistics:
    none). n_distinct < 0 is a fraction of the rows; > 0 an absolute count."""
    rows = conn.execute(
        "SELECT attname, n_distinct FROM pg_stats WHERE schemaname = %s AND tablename = %s",
        (item.schema_name, item.table),
    ).fetchall()
    table_rows = max(item.rows, 1)
    return {
        name
        for name, n_distinct in rows
        if (n_distinct < 0 and -n_distinct > 0.5) or (n_distinct > 0.5 * table_rows)
    }


def plan_jobs(
    settings: Settings,
    leader: psycopg.Connection[Any],
    item: TableItem,
    pg_columns: list[PgColumn],
    scope: Scope,
) -> list[ExportJob]:
    """One job per table, or several for a table above `export_split_rows` rows or
    `export_split_bytes` bytes of the tenant's (wide rows count by their weight, not their
    number). Runs in the leader's snapshot, so ranges and types match it.

    Rows go out in a deterministic order. Small and derived tables: ORDER BY the primary
    key; a large derived table is split into key ranges (a single integer key's span in equal
    slices, any other key at its quantiles). Large tenant-scoped or schema tables: block
    (ctid) ranges read in physical order, which costs the server a third less than key ranges
    with ORDER BY (measured); `run_job` rules out the plans whose order is not physical.
    """
    table, where = ident(item.qualified), scope.where(item.qualified)
    dimensions = array_dimensions(leader, table, pg_columns, where)
    distinct = mostly_distinct(leader, item)
    plans = [
        replace(
            plan_column(c, dimensions=dimensions.get(c.name, 1)),
            repetitive=c.name not in distinct,
        )
        for c in pg_columns
    ]
    workers = settings.export.workers
    needed = max(
        -(-item.rows // settings.export.split_rows),
        -(-item.bytes_estimate // settings.export.split_bytes),
        1,
    )
    # Whole rounds of workers, so no worker idles while another finishes alone.
    count = min(-(-max(needed, workers) // workers) * workers, 1000)
    ranges: list[sql.Composable] = [sql.SQL("TRUE")]
    physical = needed > 1 and item.scope in ("tenant", "schema")
    key = item.primary_key[0] if len(item.primary_key) == 1 else None
    key_type = next((c.type_name for c in pg_columns if c.name == key), None)
    if physical:
        row = leader.execute(
            "SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (item.schema_name, item.table),
        ).fetchone()
        step = -(-(int(row[0]) if row else 0) // count) or 1
        ranges = [
            sql.SQL("ctid >= {lo}::tid AND ctid < {hi}::tid").format(
                lo=sql.Literal(f"({n * step},0)"), hi=sql.Literal(f"({(n + 1) * step},0)")
            )
            for n in range(count - 1)
        ]
        # The last range is open: the table only grows, never past what the snapshot sees.
        ranges.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({(count - 1) * step},0)")))
    elif key and key_type in ("int2", "int4", "int8") and needed > 1:
        ranges = _integer_ranges(leader, table, where, key, count) or ranges
    elif item.primary_key and needed > 1:
        ranges = _key_ranges(leader, table, where, item, pg_columns, count) or ranges
    order = [] if physical else item.primary_key
    return [
        ExportJob(
            table=item.qualified,
            relative=f"{table_folder(item.qualified)}part-{n:05d}.parquet",
            plans=plans,
            query=select_query(
                table,
                plans,
                sql.SQL("({}) AND {}").format(where, part_range),
                order,
                physical=physical,
            ).as_string(),
            physical=physical,
        )
        for n, part_range in enumerate(ranges)
    ]


def _integer_ranges(
    leader: psycopg.Connection[Any],
    table: sql.Composable,
    where: sql.Composable,
    key: str,
    count: int,
) -> list[sql.Composable]:
    """`count` equal slices of a single integer key's span: two index lookups."""
    bounds = leader.execute(
        sql.SQL("SELECT min({k}), max({k}) FROM {t} WHERE {w}").format(
            k=sql.Identifier(key), t=table, w=where
        )
    ).fetchone()
    if not bounds or bounds[0] is None:
        return []
    low, high = int(bounds[0]), int(bounds[1])
    step = -(-(high - low + 1) // count)
    return [
        sql.SQL("{k} >= {lo} AND {k} < {hi}").format(
            k=sql.Identifier(key), lo=sql.Literal(start), hi=sql.Literal(start + step)
        )
        for start in range(low, high + 1, step)
    ]


def _key_ranges(
    leader: psycopg.Connection[Any],
    table: sql.Composable,
    where: sql.Composable,
    item: TableItem,
    pg_columns: list[PgColumn],
    count: int,
) -> list[sql.Composable]:
    """Ranges of any primary key (composite, text, uuid, dates...) holding about the same
    number of the tenant's rows: one ordered pass over the keys picks every n-th as a
    boundary. Boundaries travel as text and are cast back to the column's declared type, and
    rows compare as rows, so ranges follow the key's own order (its collation included) and
    every row falls in exactly one."""
    types = {c.name: c.pg_type for c in pg_columns}
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in item.primary_key)
    step = max(-(-item.rows // count), 1)
    boundaries = leader.execute(
        sql.SQL(
            "SELECT {texts} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS n "
            "FROM {t} WHERE {w}) s WHERE n > 1 AND n % {step} = 1 ORDER BY n"
        ).format(
            texts=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k))
                                     for k in item.primary_key),
            keys=keys, t=table, w=where, step=sql.Literal(step),
        )
    ).fetchall()  # fmt: skip
    if not boundaries:
        return []
    row = sql.SQL("ROW({})").format(keys)
    values = [
        sql.SQL("ROW({})").format(
            sql.SQL(", ").join(
                sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(types[name]))
                for name, value in zip(item.primary_key, boundary, strict=True)
            )
        )
        for boundary in boundaries
    ]
    ranges: list[sql.Composable] = [sql.SQL("{} < {}").format(row, values[0])]
    ranges += [
        sql.SQL("{r} >= {lo} AND {r} < {hi}").format(r=row, lo=low, hi=high)
        for low, high in pairwise(values)
    ]
    ranges.append(sql.SQL("{} >= {}").format(row, values[-1]))
    return ranges
