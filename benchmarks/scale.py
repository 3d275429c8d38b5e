"""A tenant ten times the benchmark size: the project's export of the 5-million-row wide table
and of a 50-million-row one, in the same private cluster, split into the same number of parts
(so both workers run in both): is memory flat (within 10%) and time linear (within 15%)? Then
the packaging of each export's Parquet parts into a bundle of 64 MiB ZIP parts, one part at a
time and two at once (`export.bundle_workers`): the same questions.

    make bench-scale    (about 15 minutes and 40 GB of disk, medians of 3; replaces its section
                        of RESULTS.md)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from benchmarks.results import record
from benchmarks.run import WIDE, machine, measured, timed
from offboarding.dev.services import PostgresCluster

HERE = Path(__file__).resolve().parent
PART_BYTES = 64 * 1024**2  # the bundle's parts, so both sizes have several


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000, help="the benchmark size")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    args = parser.parse_args()
    sizes = {"base": args.rows, "tenfold": args.rows * 10}
    work = Path(tempfile.mkdtemp(prefix="offboard-scale-"))
    cluster = PostgresCluster()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in sizes}
    packaged: dict[tuple[str, int], list[tuple[float, float]]] = {}
    parquet_bytes: dict[str, int] = {}
    table_bytes: dict[str, int] = {}
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE tenants (id text PRIMARY KEY)")
            conn.execute("INSERT INTO tenants VALUES ('bench')")
        # Each size is measured right after it is built, warm: the ten-fold table does not fit
        # in this machine's page cache, and scanning it would evict the small one.
        for name, rows in sizes.items():
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                started = time.perf_counter()
                conn.execute(WIDE.format(name=name, rows=rows))
                conn.execute(f"VACUUM ANALYZE {name}")
                size = conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()
                print(f"built {name}: {rows:,} rows in {time.perf_counter() - started:.0f}s")
            table_bytes[name] = int(size[0]) if size else 0
            for _ in range(args.repeat):
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                # The same number of parts (50) for both sizes: only the rows per part differ.
                env = {"OFFBOARD_EXPORT_SPLIT_ROWS": str(max(rows // 50, 1_000)),
                       "PATH": "/usr/bin:/bin"}  # fmt: skip
                wall, rss = timed(
                    [sys.executable, "-m", "benchmarks.ours", cluster.dsn, name, str(out)], env
                )
                results[name].append((wall, rss))
                print(f"{name:<8} {rows:>11,} rows {wall:7.1f}s {rss:6.0f} MB", flush=True)
                parquet_bytes[name] = sum(f.stat().st_size for f in out.rglob("*.parquet"))
                for workers in (1, 2):
                    bundle = work / "bundle"
                    shutil.rmtree(bundle, ignore_errors=True)
                    run = measured([
                        sys.executable, "-m", "benchmarks.bundle_files", str(out), str(bundle),
                        "--part-bytes", str(PART_BYTES), "--workers", str(workers),
                    ])  # fmt: skip
                    packaged.setdefault((name, workers), []).append((run.wall, run.rss_mb))
                    print(f"{name:<8} packaged, {workers} at once {run.wall:7.1f}s", flush=True)
                shutil.rmtree(work / "bundle", ignore_errors=True)
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE {name}")  # room on disk for the next one
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    best = {name: _medians(runs) for name, runs in results.items()}
    (base_wall, base_rss), (big_wall, big_rss) = best["base"], best["tenfold"]
    report = (
        f"\n## A tenant ten times the benchmark size (`make bench-scale`)\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. The project's export "
        f"of the wide table, {args.rows:,} and {args.rows * 10:,} rows, 50 parts each, medians "
        f"of {args.repeat} runs (start-up included); each size measured right "
        "after it was built (the ten-fold table does not fit in the page cache).\n\n"
        "| rows | table in PostgreSQL (GB) | wall (s) | peak RSS (MB) |\n|---:|---:|---:|---:|\n"
        f"| {args.rows:,} | {table_bytes['base'] / 1e9:.1f} | {base_wall:.1f} | {base_rss:.0f} |\n"
        f"| {args.rows * 10:,} | {table_bytes['tenfold'] / 1e9:.1f} | {big_wall:.1f} | "
        f"{big_rss:.0f} |\n\n"
        f"Ten times the rows: time x{big_wall / base_wall:.2f} (linear is x10, within 15%: "
        f"x8.5 to x11.5), peak RSS x{big_rss / base_rss:.2f} (flat within 10%: at most x1.10).\n"
    )
    report += _packaging(packaged, parquet_bytes, args.rows)
    print(report)
    record(report, ("## A tenant ten times the benchmark size",))


def _medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median wall and the median peak RSS of the runs."""
    return statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs)


def _packaging(
    packaged: dict[tuple[str, int], list[tuple[float, float]]],
    parquet_bytes: dict[str, int],
    rows: int,
) -> str:
    """The packaging's table: median wall and peak RSS, per size and writers at once."""
    best = {key: _medians(runs) for key, runs in packaged.items()}
    lines = [
        f"\nPackaging each export's Parquet parts into a bundle of {PART_BYTES // 1024**2} MiB "
        "ZIP parts (every entry hashed and checked against the signed plan):\n",
        "| rows | Parquet (MB) | writers at once | wall (s) | MB/s | peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, workers), (wall, rss) in sorted(best.items(), key=lambda item: item[0]):
        size = parquet_bytes[name] / 1e6
        lines.append(
            f"| {rows * (10 if name == 'tenfold' else 1):,} | {size:,.0f} | {workers} | "
            f"{wall:.1f} | {size / wall:,.0f} | {rss:.0f} |"
        )
    two = {name: best[(name, 2)] for name in ("base", "tenfold")}
    lines.append(
        f"\nTen times the rows, two writers: time x{two['tenfold'][0] / two['base'][0]:.2f}, "
        f"peak RSS x{two['tenfold'][1] / two['base'][1]:.2f}; two writers against one on the "
        f"ten-fold tenant: x{best[('tenfold', 1)][0] / two['tenfold'][0]:.2f} faster.\n"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
