"""Readers of the MariaDB benchmark (benchmarks/mariadb.py), one process each:

    python -m benchmarks.mariadb_readers ours       URL TARGET   # the project's venv
    python benchmarks/mariadb_readers.py pymysql    URL TARGET   # the peers' venv
    python benchmarks/mariadb_readers.py mysqlclient URL TARGET  # the peers' venv
    python benchmarks/mariadb_readers.py connectorx URL TARGET   # the peers' venv

Each writes the tenant's rows of `pages` as Parquet (zstd) under TARGET.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

QUERY = "SELECT * FROM pages WHERE tenant_id = 'bench' ORDER BY id"


def ours(url: str, target: str) -> None:
    from offboarding.core.config import Settings
    from offboarding.core.records import CaseRef
    from offboarding.datamap import MariaDBSystem
    from offboarding.locations.mariadb import MariaDBLocation

    system = MariaDBSystem(plugin="mariadb", url=url)
    location = MariaDBLocation(Settings(home=Path(target).parent / "home"), "bench", system)
    case = CaseRef(tenant="bench", case_id="bench-000000000000")
    inventory = location.inventory(case)
    location.export(case, inventory, Path(f"{target}-parts"))


def _dbapi(conn: Any, cursor: Any, target: str) -> None:
    """Stream QUERY through a DB-API server-side cursor into Parquet, batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cursor.execute(QUERY)
    names = [d[0] for d in cursor.description]
    writer = None
    while rows := cursor.fetchmany(10_000):
        batch = pa.RecordBatch.from_arrays(
            [pa.array([r[i] for r in rows]) for i in range(len(names))], names=names
        )
        if writer is None:
            writer = pq.ParquetWriter(target, batch.schema, compression="zstd")
        writer.write_batch(batch.cast(writer.schema))
    if writer:
        writer.close()
    conn.close()


def _parts(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {"host": parts.hostname, "port": parts.port, "user": parts.username,
            "database": parts.path[1:]}  # fmt: skip


def pymysql_reader(url: str, target: str) -> None:
    import pymysql
    import pymysql.cursors

    conn = pymysql.connect(**_parts(url), cursorclass=pymysql.cursors.SSCursor)
    _dbapi(conn, conn.cursor(), target)


def mysqlclient(url: str, target: str) -> None:
    import MySQLdb
    import MySQLdb.cursors

    args = _parts(url)
    conn = MySQLdb.connect(
        host=args["host"], port=args["port"], user=args["user"], database=args["database"],
        cursorclass=MySQLdb.cursors.SSCursor,
    )  # fmt: skip
    _dbapi(conn, conn.cursor(), target)


def connectorx(url: str, target: str) -> None:
    import connectorx as cx
    import pyarrow.parquet as pq

    table = cx.read_sql(url, QUERY, return_type="arrow")
    pq.write_table(table, target, compression="zstd")


if __name__ == "__main__":
    tool, url, target = sys.argv[1:4]
    readers = {"ours": ours, "pymysql": pymysql_reader, "mysqlclient": mysqlclient,
               "connectorx": connectorx}  # fmt: skip
    readers[tool](url, target)
