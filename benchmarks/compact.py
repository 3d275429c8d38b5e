"""The compaction's cost: the rewrite against the deletion it completes, on the destruction
benchmark's platform, and the cost per destroyed tenant when one weekly run serves 1, 10 and
50 tenants.

Two platforms of the same tables as `make bench-destroy` (`posts` with a tenant column,
`comments` through `posts`, foreign keys indexed, tenants interleaved as a live platform
writes them), each about 6M rows:

- the destruction benchmark's own: 4 tenants, the destroyed one holding a quarter. On a fresh
  copy, the project destroys it (the isolation check, the location's destroy, the
  verification: what `make bench-destroy` times), then the compaction rewrites the two tables
  (VACUUM FULL, CHECKPOINT, WAL switch) and the canary scan reads their files; on another
  copy, the same deletion and pg_repack's online rewrite instead.
- one of 100 tenants of 60,000 rows each. On a fresh copy per count, 1, 10 or 50 tenants are
  deleted (plain SQL and VACUUM: the deletion is not what is measured here), then one run
  rewrites the tables for all of them: the run's time divided by the tenants it serves.

    make bench-compact    (about 15 minutes, medians of 3; replaces its section of RESULTS.md)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from benchmarks.destroy import BASELINE, DATAMAP, TENANT, build, copy, ours
from benchmarks.results import record
from benchmarks.run import machine
from offboarding.core.config import Settings
from offboarding.dev.services import PostgresCluster
from offboarding.locations.postgres.repack import repack
from offboarding.locations.postgres.residue import canaries_of, compact, relation_files, scan

TABLES = ["public.comments", "public.posts"]


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _settings(home: Path, dsn: str) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    (home / "datamap.toml").write_text(DATAMAP)
    return Settings(home=home, database_url=dsn, datamap=home / "datamap.toml")


def rewrite_against_deletion(
    cluster: PostgresCluster, template: str, home: Path
) -> dict[str, float]:
    """One tenant of the destruction benchmark: its deletion, then each way of rewriting."""
    dsn = copy(cluster, template, "run_vacuum")
    canaries = canaries_of(_settings(home / "sample", dsn), TENANT)
    times = {"deletion": ours(dsn, home / "vacuum")["total"]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = scan(conn, relation_files(conn, TABLES), canaries)
        times["VACUUM FULL"] = _timed(lambda: compact(conn, TABLES))
        started = time.perf_counter()
        after = scan(conn, relation_files(conn, TABLES), canaries)
        times["scan"] = time.perf_counter() - started
        # The floor: the same files read through the server, nothing looked for.
        times["read"] = _timed(lambda: scan(conn, relation_files(conn, TABLES), []))
        times["scanned GB"] = after.bytes / 1e9
    times["canaries before"], times["canaries after"] = before.holding, after.holding
    times["live"] = len(after.live)  # found, but live rows hold them: each such table read
    dsn = copy(cluster, template, "run_repack")
    times["deletion (2)"] = ours(dsn, home / "repack")["total"]
    times["pg_repack"] = _timed(lambda: repack(dsn, TABLES))
    return times


def shared_run(cluster: PostgresCluster, template: str, served: int) -> dict[str, float]:
    """`served` tenants deleted, then one run rewriting the tables for all of them."""
    dsn = copy(cluster, template, "run_shared")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(served):
            for statement in BASELINE:
                conn.execute(statement.replace(f"'{TENANT}'", f"'t{n}'"))  # type: ignore[call-overload]
        return {"run": _timed(lambda: compact(conn, TABLES))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=500_000, help="posts per tenant (4 tenants)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--served", default="1,10,50", help="tenants one run serves")
    args = parser.parse_args()
    served = [int(n) for n in args.served.split(",")]
    many = max(100, 2 * max(served))
    work = Path(tempfile.mkdtemp(prefix="offboard-bench-compact-"))
    cluster = PostgresCluster()
    single: list[dict[str, float]] = []
    shared: dict[int, list[float]] = {n: [] for n in served}
    try:
        cluster.start()
        rows, size = build(cluster, "template_bench", [4], args.posts)
        for n in range(args.repeat):
            single.append(rewrite_against_deletion(cluster, "template_bench", work / f"h{n}"))
            print(single[-1], flush=True)
        small = args.posts * 4 // many
        rows_many, size_many = build(cluster, "template_many", [many], small)
        for count in served:
            for _ in range(args.repeat):
                shared[count].append(shared_run(cluster, "template_many", count)["run"])
            print(count, shared[count], flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    median = {k: statistics.median(r[k] for r in single) for k in single[0]}
    deletion = statistics.median([*(r["deletion"] for r in single),
                                  *(r["deletion (2)"] for r in single)])  # fmt: skip
    run = {count: statistics.median(times) for count, times in shared.items()}
    lines = [
        "\n## Compaction: the rewrite against the deletion (`make bench-compact`)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. The destruction "
        f"benchmark's platform: {rows:,} rows ({size / 1e9:.2f} GB), 4 tenants interleaved, "
        f"the destroyed one holding {3 * args.posts:,} rows. Median of {args.repeat}, each on "
        "a fresh copy.\n",
        "| step | time (s) | against the deletion |",
        "|---|---:|---:|",
        f"| the project's deletion (check, destroy, verify) | {deletion:.1f} | 1.00x |",
        f"| VACUUM FULL of both tables, CHECKPOINT, WAL switch | {median['VACUUM FULL']:.1f} | "
        f"{median['VACUUM FULL'] / deletion:.2f}x |",
        f"| pg_repack of both tables (online) | {median['pg_repack']:.1f} | "
        f"{median['pg_repack'] / deletion:.2f}x |",
        f"| the canary scan of the rewritten files ({median['scanned GB']:.2f} GB) | "
        f"{median['scan']:.1f} | {median['scan'] / deletion:.2f}x |",
        f"| the same files read through the server, nothing looked for (the scan's floor) | "
        f"{median['read']:.1f} | {median['read'] / deletion:.2f}x |",
        f"\nThe scan takes {median['scan'] / median['read']:.2f}x the plain read of its files "
        "(every canary looked for in one pass: an Aho-Corasick automaton); "
        f"{median['live']:.0f} canaries found in the rewritten files are held by live rows "
        "(the benchmark's values repeat across tenants), and telling so reads each table "
        "holding them once more (a binary COPY of its text columns).\n",
        f"Canaries in the tables' files after the deletion: {median['canaries before']:.0f} "
        f"of 64; after the rewrite: {median['canaries after']:.0f}.\n",
        f"One run serving several tenants: {rows_many:,} rows ({size_many / 1e9:.2f} GB) of "
        f"{many} tenants ({3 * small:,} rows each); the tenants deleted, then one VACUUM FULL "
        "run for all of them.\n",
        "| tenants served | run (s) | per tenant (s) | per tenant, against serving one |",
        "|---:|---:|---:|---:|",
    ]
    for count in served:
        per, one = run[count] / count, run[served[0]] / served[0]
        lines.append(f"| {count} | {run[count]:.1f} | {per:.2f} | {per / one:.3f}x |")
    lines.append(
        "\nThe rewrite's cost is the size of the tables the tenants shared, not the tenants': "
        "a run serving many tenants divides it among them, which is why one weekly run serves "
        "every tenant destroyed since the last.\n"
    )
    report = "\n".join(lines)
    print(report)
    record(report, ("## Compaction",))


if __name__ == "__main__":
    main()
