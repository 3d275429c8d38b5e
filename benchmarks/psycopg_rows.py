"""The psycopg alternative for the bulk path, kept to show why the export reads through ADBC:
binary COPY through psycopg, rows converted to Arrow column by column, same Parquet settings.

    python -m benchmarks.psycopg_rows DSN TABLE TARGET ROW_GROUP
"""

from __future__ import annotations

import sys

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    dsn, table, target, row_group = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with psycopg.connect(dsn) as conn:
        schema = None
        writer = None
        types = [
            r[0]
            for r in conn.execute(
                "SELECT atttypid::regtype::text FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                (table,),
            )
        ]
        with conn.cursor().copy(f"COPY (SELECT * FROM {table}) TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(types)
            rows: list[tuple[object, ...]] = []
            for row in copy.rows():
                rows.append(row)
                if len(rows) == row_group:
                    writer, schema = _flush(rows, writer, schema, target)
                    rows = []
            if rows:
                writer, schema = _flush(rows, writer, schema, target)
        if writer:
            writer.close()


def _flush(
    rows: list[tuple[object, ...]],
    writer: pq.ParquetWriter | None,
    schema: pa.Schema | None,
    target: str,
) -> tuple[pq.ParquetWriter, pa.Schema]:
    columns = [
        pa.array([str(v) if isinstance(v, dict) else v for v in col])
        for col in zip(*rows, strict=True)
    ]
    table = pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(len(columns))])
    if writer is None:
        schema = table.schema
        writer = pq.ParquetWriter(target, schema, compression="zstd", compression_level=1)
    writer.write_table(table.cast(schema))
    return writer, table.schema if schema is None else schema


if __name__ == "__main__":
    main()
