"""The Parquet encoding and compression alone, for the export benchmark's CPU budget (run.py):
a table's rows read into memory first (ADBC), then written with the project's options and
row groups, the write timed by CPU.

    python -m benchmarks.encode DSN TABLE ROW_GROUP    # prints the write's CPU seconds
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from exporters.parquet import repeating_text, row_groups, write_row_groups


def main() -> None:
    dsn, table, row_group = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with adbc.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        rows = cursor.fetch_arrow_table()
    with tempfile.TemporaryDirectory(prefix="offboard-encode-") as scratch:
        started = time.process_time()
        write_row_groups(
            row_groups(iter(rows.to_batches()), row_group), rows.schema,
            Path(scratch) / "rows.parquet", row_group, repeating_text,
        )  # fmt: skip
        print(f"{time.process_time() - started:.3f}")
    del rows
    pa.default_memory_pool().release_unused()


if __name__ == "__main__":
    main()
