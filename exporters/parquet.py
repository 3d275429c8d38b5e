"""PostgreSQL rows to Parquet, streamed in batches from a server-side cursor.

Each PostgreSQL type maps to the Arrow type that holds it without loss. Where Arrow has no
exact type (intervals, ranges, network addresses, enums, unconstrained numerics...) the value
is exported in PostgreSQL's own text form and the column is marked `as_text` in the manifest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from offboarding.errors import IntegrityError

__all__ = ["ColumnPlan", "PgColumn", "array_dimensions", "plan_column", "write_parquet"]

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "use_dictionary": True,
    "write_statistics": True,
}

_SCALARS: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "oid": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "citext": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "uuid": pa.uuid(),
}

# JSON keeps PostgreSQL's canonical text; Arrow's JSON type marks the column as JSON.
_JSON = {"json", "jsonb"}


@dataclass(frozen=True)
class PgColumn:
    name: str
    pg_type: str  # format_type() output, e.g. "numeric(12,4)"
    type_name: str  # pg_type.typname, e.g. "numeric", "_int4"
    element_type: str | None  # typname of an array's element
    typmod: int
    not_null: bool


@dataclass(frozen=True)
class ColumnPlan:
    column: PgColumn
    arrow_type: pa.DataType
    as_text: bool
    select: sql.Composable
    convert: Callable[[list[Any]], pa.Array] | None = None


def _numeric_type(typmod: int) -> pa.DataType | None:
    if typmod < 4:
        return None  # unconstrained numeric: any precision, only text holds it exactly
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if scale > precision or precision > 76:
        return None
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def _uuid_array(values: list[Any]) -> pa.Array:
    storage = pa.array([v.bytes if isinstance(v, uuid.UUID) else v for v in values], pa.binary(16))
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def plan_column(column: PgColumn, *, dimensions: int = 1) -> ColumnPlan:
    """How one column is selected and which Arrow type receives it.

    `dimensions` is the largest number of array dimensions in the exported rows: Arrow lists
    hold one dimension, so multi-dimensional arrays go out as PostgreSQL text.
    """
    ident = sql.Identifier(column.name)
    as_text = sql.SQL("{}::text").format(ident)
    if column.type_name in _JSON:
        return ColumnPlan(column, pa.json_(pa.string()), False, as_text)
    if column.type_name == "numeric":
        decimal = _numeric_type(column.typmod)
        if decimal is not None:
            return ColumnPlan(column, decimal, False, ident)
        return ColumnPlan(column, pa.string(), True, as_text)
    if column.type_name == "uuid":
        return ColumnPlan(column, pa.uuid(), False, ident, _uuid_array)
    if column.type_name in _SCALARS:
        return ColumnPlan(column, _SCALARS[column.type_name], False, ident)
    element = column.element_type
    if element and element in _SCALARS and element not in ("uuid", "bytea") and dimensions <= 1:
        return ColumnPlan(column, pa.list_(_SCALARS[element]), False, ident)
    # No exact Arrow type: arrays of other types, enums, intervals, ranges, inet, composites...
    return ColumnPlan(column, pa.string(), True, as_text)


def array_dimensions(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[PgColumn],
    where: sql.Composable,
    params: dict[str, Any],
) -> dict[str, int]:
    """Largest array_ndims of each array column over the selected rows (same snapshot)."""
    arrays = [c for c in columns if c.element_type]
    if not arrays:
        return {}
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(
            sql.SQL("coalesce(max(array_ndims({})), 1)").format(sql.Identifier(c.name))
            for c in arrays
        ),
        table,
        where,
    )
    row = conn.execute(query, params).fetchone()
    return {c.name: int(n) for c, n in zip(arrays, row or (), strict=True)}


def arrow_schema(plans: Sequence[ColumnPlan]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(
                p.column.name,
                p.arrow_type,
                nullable=not p.column.not_null,
                metadata={"postgresql_type": p.column.pg_type, "as_text": str(p.as_text).lower()},
            )
            for p in plans
        ]
    )


def _to_arrow(plan: ColumnPlan, values: Sequence[Any]) -> pa.Array:
    try:
        return plan.convert(list(values)) if plan.convert else pa.array(values, plan.arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        raise IntegrityError(
            f"column {plan.column.name} ({plan.column.pg_type}) does not fit Arrow type "
            f"{plan.arrow_type}: {error}. Report this as a bug; nothing was delivered"
        ) from error


def write_parquet(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    plans: Sequence[ColumnPlan],
    where: sql.Composable,
    params: dict[str, Any],
    order_by: Sequence[str],
    target: Path,
    batch_rows: int,
) -> int:
    """Stream the selected rows of `table` into one Parquet file; return the row count.

    Runs inside the caller's transaction, so every table comes from the same snapshot.
    """
    schema = arrow_schema(plans)
    ordering = (
        sql.SQL(", ").join(sql.Identifier(c) for c in order_by) if order_by else sql.SQL("ctid")
    )
    query = sql.SQL("SELECT {cols} FROM {table} WHERE {where} ORDER BY {order}").format(
        cols=sql.SQL(", ").join(p.select for p in plans),
        table=table,
        where=where,
        order=ordering,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with (
        conn.cursor(name=f"export_{target.parent.name}"[:60].replace(".", "_")) as cursor,
        pq.ParquetWriter(target, schema, **PARQUET_OPTIONS) as writer,
    ):
        cursor.itersize = batch_rows
        cursor.execute(query, params)
        while batch := cursor.fetchmany(batch_rows):
            columns = list(zip(*batch, strict=True))
            arrays = [_to_arrow(plan, values) for plan, values in zip(plans, columns, strict=True)]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += len(batch)
        if rows == 0:
            writer.write_table(schema.empty_table())
    return rows
