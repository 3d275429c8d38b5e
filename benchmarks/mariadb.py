"""MariaDB export benchmark: which reader the MariaDB location should use, measured.

    make bench-mariadb                     # 1,000,000 tenant rows among as many neighbours'
    make bench-mariadb BENCH_ARGS=--quick  # a tenth of that, one repeat

Builds a wiki-like table in a private MariaDB server (Debian's mariadbd), the tenant's rows
interleaved with a neighbour's, then exports the tenant's rows with each tool, `--repeat`
times (medians of wall time and peak RSS of each tool's process):

- the floor: Debian's `mariadb --batch --quick` client writing tab-separated text (C, no
  types, no Parquet): how fast the server hands the rows over;
- the peer tool: `mariadb-dump --single-transaction --where` (SQL text, one snapshot);
- the project: the MariaDB location's export (mysqlclient, one consistent snapshot, Parquet);
- other readers into Parquet (benchmarks/mariadb_readers.py, in the peers' environment):
  PyMySQL (pure Python), mysqlclient alone (C, over Debian's libmariadb), and ConnectorX
  (Rust, straight to Arrow, but on connections of its own: no snapshot shared between tables).

Prints ratios against the floor and replaces its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import MySQLdb

from benchmarks.results import record
from benchmarks.run import machine, timed
from offboarding.dev.services import MariaDBServer

HERE = Path(__file__).resolve().parent
DATABASE = "bench"
TABLE = """
CREATE TABLE pages (
  id BIGINT PRIMARY KEY, tenant_id VARCHAR(64) NOT NULL, space_id BIGINT NOT NULL,
  title VARCHAR(200) NOT NULL, body TEXT, score DECIMAL(12, 4), views INT UNSIGNED,
  created DATETIME(6) NOT NULL, updated TIMESTAMP(3) NULL, flags TINYINT NOT NULL,
  KEY (tenant_id, id)
) ENGINE=InnoDB
"""
# MariaDB's Sequence engine generates the rows server-side: odd ids are the tenant's.
FILL = """
INSERT INTO pages
SELECT seq, IF(seq % 2, 'bench', 'neighbour'), seq % 1000, CONCAT('Page ', seq, ' - Zoë'),
  REPEAT(MD5(seq), 6), (seq % 9973) / 7, seq % 100000,
  TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
  TIMESTAMP '2024-06-01 00:00:00' + INTERVAL seq SECOND, seq % 3
FROM seq_1_to_{rows}
"""
QUERY = "SELECT * FROM pages WHERE tenant_id = 'bench' ORDER BY id"
FLOOR = "floor: mariadb --batch --quick (C client, text)"
OURS = "tenant-offboarding (mysqlclient, one snapshot, Parquet)"


@dataclass
class Measure:
    tool: str
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


def build(server: MariaDBServer, rows: int) -> None:
    conn = MySQLdb.connect(host="127.0.0.1", port=server.port, user="offboard", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DATABASE}")
        cur.execute(f"USE {DATABASE}")
        cur.execute(TABLE)
        started = time.perf_counter()
        cur.execute(FILL.format(rows=rows * 2))
        cur.execute("ANALYZE TABLE pages")
        print(f"built pages: {rows * 2:,} rows in {time.perf_counter() - started:.0f}s", flush=True)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="the tenant's rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows, one repeat")
    parser.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = args.rows // 10, 1
    work = Path(tempfile.mkdtemp(prefix="offboard-bench-mariadb-"))
    server = MariaDBServer().start()
    try:
        build(server, args.rows)
        url = server.url(DATABASE)
        client = ["--host=127.0.0.1", f"--port={server.port}", "--user=offboard", DATABASE]
        out = str(work / "out")
        tools: list[tuple[str, list[str]]] = [
            (FLOOR,
             ["sh", "-c", f'mariadb --batch --quick {" ".join(client)} -e "{QUERY}" > {out}']),
            ("mariadb-dump --single-transaction (SQL text)",
             ["sh", "-c", f"mariadb-dump --single-transaction --quick --skip-lock-tables "
                          f"--where=\"tenant_id='bench'\" {' '.join(client)} pages > {out}"]),
            (OURS, [sys.executable, "-m", "benchmarks.mariadb_readers", "ours", url, out]),
        ]  # fmt: skip
        peers = Path(args.peers_python)
        if peers.exists():
            readers = HERE / "mariadb_readers.py"
            tools += [
                ("PyMySQL alone (pure Python), Parquet",
                 [str(peers), str(readers), "pymysql", url, out]),
                ("mysqlclient (C, libmariadb), Parquet",
                 [str(peers), str(readers), "mysqlclient", url, out]),
                ("ConnectorX (Rust, no shared snapshot), Parquet",
                 [str(peers), str(readers), "connectorx", url, out]),
            ]  # fmt: skip
        results = []
        for name, argv in tools:
            measure = Measure(name)
            for _ in range(args.repeat):
                wall, rss = timed(argv, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
                measure.walls.append(wall)
                measure.rss.append(rss)
            results.append(measure)
            print(f"{name}: {statistics.median(measure.walls):.1f}s", flush=True)
    finally:
        server.stop()
    floor = statistics.median(results[0].walls)
    lines = [
        f"## MariaDB export (`make bench-mariadb`): {args.rows:,} tenant rows among "
        f"{args.rows * 2:,}",
        "",
        f"Machine: {machine()}; MariaDB 10.11 (Debian); median of {args.repeat}.",
        "",
        "| tool | wall (s) | rows/s | peak RSS (MB) | ratio to the floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in results:
        wall = statistics.median(m.walls)
        lines.append(
            f"| {m.tool} | {wall:.1f} | {args.rows / wall:,.0f} | {statistics.median(m.rss):.0f} "
            f"| {wall / floor:.2f} |"
        )
    by_tool = {m.tool: statistics.median(m.walls) for m in results}
    ours = by_tool[OURS]
    others = {
        tool.split(" (")[0]: wall
        for tool, wall in by_tool.items()
        if tool not in (OURS, FLOOR) and "mariadb-dump" not in tool
    }
    compared = ", ".join(f"{tool} {wall / ours:.2f}x" for tool, wall in others.items())
    pymysql_speed = (
        f" ({others['PyMySQL alone'] / ours:.1f}x faster than PyMySQL)"
        if "PyMySQL alone" in others
        else ""
    )
    connectorx = others.get("ConnectorX")
    lines += [
        "",
        f"The project's export takes {ours / floor:.2f}x the time of the C client, which writes "
        "untyped text. Time of each other reader against the project's export: "
        f"{compared}. The location reads with mysqlclient (C, over libmariadb, which `make "
        f"setup` installs){pymysql_speed}, with a server-side cursor and one snapshot shared "
        "by its connections. Decimals, floats, dates and timestamps come as the server's text "
        "and Arrow parses them a batch at a time; the driver builds Python objects only for "
        "the other columns."
        + (
            f" ConnectorX (Rust) takes {connectorx / ours:.2f}x the project's time, and it reads "
            "each table on connections of its own, so the tables of one export would not come "
            "from one snapshot."
            if connectorx
            else ""
        ),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    record(report, ("## MariaDB export",))


if __name__ == "__main__":
    main()
