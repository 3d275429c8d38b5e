"""Peer exporters, run in the peers' own environment (benchmarks/.venv-peers):

    python peers.py duckdb DSN TABLE TARGET ROW_GROUP
    python peers.py adbc   DSN TABLE TARGET ROW_GROUP
    python peers.py adbc-decode DSN TABLE - ROW_GROUP   # decoded into Arrow, nothing written

Same Parquet settings as the project: zstd level 1, the same row-group size.
"""

from __future__ import annotations

import sys
from pathlib import Path


def duckdb_export(dsn: str, table: str, target: str, row_group: int) -> None:
    import duckdb
    import duckdb_ext

    extension = next(
        Path(next(iter(duckdb_ext.__path__))).glob(
            "extensions/*/*/postgres_scanner.duckdb_extension"
        )
    )
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"LOAD '{extension}'")
    con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
    con.execute(
        f"COPY (SELECT * FROM pg.public.{table}) TO '{target}' "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE {row_group})"
    )


def adbc_export(dsn: str, table: str, target: str, row_group: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    with adbc.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        reader = cursor.fetch_record_batch()
        with pq.ParquetWriter(
            target, reader.schema, compression="zstd", compression_level=1
        ) as writer:
            pending: list[pa.RecordBatch] = []
            buffered = 0
            for batch in reader:
                pending.append(batch)
                buffered += batch.num_rows
                if buffered >= row_group:
                    writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group)
                    pending, buffered = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group)


def adbc_decode(dsn: str, table: str, target: str, row_group: int) -> None:
    """The rows decoded into Arrow and dropped: the decoder's share of an export's CPU."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(4 * 1024 * 1024)}
        )
        cursor.execute(f"SELECT * FROM {table}")
        for _ in cursor.fetch_record_batch():
            pass


if __name__ == "__main__":
    tool, dsn, table, target, row_group = sys.argv[1:6]
    exporters = {"duckdb": duckdb_export, "adbc": adbc_export, "adbc-decode": adbc_decode}
    exporters[tool](dsn, table, target, int(row_group))
