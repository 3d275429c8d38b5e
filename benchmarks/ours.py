"""The project's export of one benchmark table, as the pipeline's export stage runs it (one
snapshot, ADBC record batches, key-range parts in parallel):

    python -m benchmarks.ours DSN TABLE SCRATCH

The inventory stage is not part of the measure: the table's row count comes from the
planner's statistics (the benchmark ANALYZEs every table), as an inventory would provide it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from exporters.parquet import plan_column
from offboarding.core.config import Settings
from offboarding.core.records import CaseRef, LocationInventory, TableItem
from offboarding.locations.postgres import PostgresLocation, column_schema, read_catalog


def main() -> None:
    dsn, table, scratch = sys.argv[1:4]
    settings = Settings(
        home=Path(scratch) / "home", database_url=dsn, global_tables={}, file_reference_columns=[]
    )
    with psycopg.connect(dsn) as conn:
        tables, columns = read_catalog(conn)
        row = conn.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", (table,)
        )
        rows = int((row.fetchone() or (0,))[0])
    entry = next(t for t in tables if t.qualified == f"public.{table}")
    item = TableItem(
        schema_name="public",
        table=table,
        scope="tenant",
        rows=rows,
        bytes_estimate=0,
        columns=[column_schema(plan_column(c)) for c in columns[entry.qualified]],
        primary_key=list(entry.primary_key),
    )
    inventory = LocationInventory(location="postgres", items=rows, bytes=0, tables=[item])
    result = PostgresLocation(settings).export(
        CaseRef(tenant="bench", case_id="bench-run"), inventory, Path(scratch) / "export"
    )
    print(sum(p.rows or 0 for p in result.parts))


if __name__ == "__main__":
    main()
