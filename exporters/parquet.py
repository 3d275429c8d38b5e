"""PostgreSQL rows to Parquet: Arrow record batches streamed by the ADBC PostgreSQL driver
(binary COPY decoded in C++), conformed to the column plan, written in fixed-size row groups.
The row groups and the writer's options serve every database's export (MariaDB's too).

Each PostgreSQL type maps to the Arrow type that holds it without loss. Where Arrow has no
exact type that Parquet can store (intervals, ranges, network addresses, enums, unconstrained
numerics, multi-dimensional arrays...) the value is exported in PostgreSQL's own text form and
the column is marked `as_text` in the manifest.

Why ADBC and not psycopg for this one job: the benchmark (benchmarks/RESULTS.md) measured
psycopg's row path at less than half the speed; psycopg stays the driver for everything else.
The driver is pinned to a build compiled with optimisation (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from offboarding.core.errors import IntegrityError

__all__ = [
    "PARQUET_OPTIONS",
    "ColumnPlan",
    "PgColumn",
    "arrow_schema",
    "plan_column",
    "repeating_text",
    "row_groups",
    "select_query",
    "write_parquet",
    "write_row_groups",
]

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
}


def _dictionary_columns(plans: Sequence[ColumnPlan]) -> list[str]:
    """Dictionary-encode only text that repeats: for mostly distinct values, trying a
    dictionary first costs more CPU than the rest of the write (measured: 2.4x)."""
    return [p.column.name for p in plans if p.repetitive and _is_text(p.arrow_type)]


def _is_text(arrow_type: pa.DataType) -> bool:
    if isinstance(arrow_type, pa.BaseExtensionType):
        arrow_type = arrow_type.storage_type
    return bool(pa.types.is_string(arrow_type) or pa.types.is_binary(arrow_type))


_SCALARS: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "uuid": pa.uuid(),
}
# Element types whose arrays the driver decodes as Arrow lists.
_LIST_ELEMENTS = {"int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "date",
                  "timestamp", "timestamptz"}  # fmt: skip
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
    repetitive: bool = True  # from the planner's statistics: worth a Parquet dictionary


def _numeric_type(typmod: int) -> pa.DataType | None:
    if typmod < 4:
        return None  # unconstrained numeric: any precision, only text holds it exactly
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if scale > precision or precision > 76:
        return None
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


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
    if column.type_name in _SCALARS:
        return ColumnPlan(column, _SCALARS[column.type_name], False, ident)
    element = column.element_type
    if element in _LIST_ELEMENTS and dimensions <= 1:
        return ColumnPlan(column, pa.list_(_SCALARS[element]), False, ident)
    # No exact Arrow type: other arrays, enums, intervals, ranges, inet, composites...
    return ColumnPlan(column, pa.string(), True, as_text)


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


def select_query(
    table: sql.Composable,
    plans: Sequence[ColumnPlan],
    where: sql.Composable,
    order_by: Sequence[str],
    *,
    physical: bool = False,
) -> sql.Composed:
    """The part's SELECT: ordered by `order_by` (ctid without a key), or, with `physical`,
    in the physical order of the scan (the caller rules out order-changing plans)."""
    query = sql.SQL("SELECT {cols} FROM {table} WHERE {where}").format(
        cols=sql.SQL(", ").join(p.select for p in plans), table=table, where=where
    )
    if physical:
        return query
    ordering = (
        sql.SQL(", ").join(sql.Identifier(c) for c in order_by) if order_by else sql.SQL("ctid")
    )
    return sql.SQL("{} ORDER BY {}").format(query, ordering)


def _conform_chunks(column: pa.ChunkedArray, plan: ColumnPlan) -> pa.ChunkedArray:
    """Conform chunk by chunk: no copy of a row group that already has the right type."""
    if column.type == plan.arrow_type:
        return column
    return pa.chunked_array([_conform(chunk, plan) for chunk in column.chunks], plan.arrow_type)


def _conform(array: pa.Array, plan: ColumnPlan) -> pa.Array:
    """The driver's Arrow type for a column, turned into the planned one without loss."""
    target = plan.arrow_type
    if array.type == target:
        return array
    if isinstance(array.type, pa.BaseExtensionType):  # e.g. uuid or numeric as opaque
        array = array.storage
    try:
        if isinstance(target, pa.BaseExtensionType):
            return pa.ExtensionArray.from_storage(target, array.cast(target.storage_type))
        return array.cast(target)  # safe cast: raises rather than truncates
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        # Arrow's message may quote the value, which is the tenant's: only its kind is kept.
        raise IntegrityError(
            f"column {plan.column.name} ({plan.column.pg_type}) arrived as {array.type} and a "
            f"value does not convert to {target} without loss ({type(error).__name__}). "
            "Nothing was delivered: find the value with a query on the column"
        ) from None


def row_groups(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Regroup the driver's batches into row groups of exactly `size` rows (the last one
    shorter), so output bytes do not depend on how the driver happened to batch."""
    pending: list[pa.RecordBatch] = []
    buffered = 0
    for batch in batches:
        pending.append(batch)
        buffered += batch.num_rows
        while buffered >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending = rest.to_batches()
            buffered = rest.num_rows
    if buffered:
        yield pa.Table.from_batches(pending)


def write_parquet(
    reader: pa.RecordBatchReader, plans: Sequence[ColumnPlan], target: Path, row_group_rows: int
) -> int:
    """Stream the reader's batches into one Parquet file; return the row count."""
    schema = arrow_schema(plans)
    groups = (
        pa.Table.from_arrays(
            [_conform_chunks(group.column(i), plan) for i, plan in enumerate(plans)],
            schema=schema,
        )
        for group in row_groups(iter(reader), row_group_rows)
    )
    return write_row_groups(
        groups, schema, target, row_group_rows, lambda _: _dictionary_columns(plans)
    )


def write_row_groups(
    groups: Iterable[pa.Table],
    schema: pa.Schema,
    target: Path,
    row_group_rows: int,
    dictionary: Callable[[pa.Table], list[str]],
) -> int:
    """Row groups of `schema` into one Parquet file with the project's options (an empty file
    still carries the schema); return the row count. `dictionary` names, from the first
    group, the columns worth a dictionary."""
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for group in groups:
            if writer is None:
                writer = pq.ParquetWriter(
                    target, schema, use_dictionary=dictionary(group), **PARQUET_OPTIONS
                )
            writer.write_table(group, row_group_size=row_group_rows)
            rows += group.num_rows
        if writer is None:
            writer = pq.ParquetWriter(target, schema, use_dictionary=False, **PARQUET_OPTIONS)
            writer.write_table(schema.empty_table())
    finally:
        if writer is not None:
            writer.close()
    return rows


def repeating_text(group: pa.Table) -> list[str]:
    """Text and binary columns of which at most half the values in `group` are distinct: the
    ones a dictionary makes smaller (the choice `_dictionary_columns` makes from PostgreSQL's
    statistics, for a database that keeps none)."""
    return [
        field.name
        for field in group.schema
        if _is_text(field.type) and pc.count_distinct(group[field.name]).as_py() * 2 <= len(group)
    ]
