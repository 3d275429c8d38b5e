"""The export fanned out on a Dask cluster of 1, 2 and 4 worker processes, against the
single-process export of the same tenant, at two tenant sizes: what does a worker's scratch
disk hold at its peak, how much memory does the coordinator (the export task holding the
snapshot) take, and how much does each worker take?

    make bench-scale    (this part: about 30 minutes, medians of 3; replaces its section of
                        RESULTS.md)
    python -m benchmarks.distributed [--rows 2000000] [--factor 4] [--part-rows 250000]

Every configuration runs the offboard flow's export task itself, reporting to a private
Prefect server, in a process of its own: parts of `--part-rows` rows, so a bigger tenant has
more parts of the same size. Scratch and worker memory are sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg

from benchmarks.results import record
from benchmarks.run import WIDE, machine
from offboarding.dev.services import DaskCluster, PostgresCluster, PrefectServer

HEADING = "## The export on a Dask cluster"


@dataclass
class Run:
    mode: str
    rows: int
    wall: float
    coordinator_mb: float
    worker_mb: float  # the highest peak of one worker process
    scratch_mb: float  # the highest total of every worker's scratch at one moment
    parts: int
    parquet_mb: float


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):  # moved to the store since it was listed
                total += os.stat(os.path.join(directory, name)).st_size
    return total


class Sampler:
    """Peak of the scratch tree's size and of each Dask worker process's RSS."""

    def __init__(self, scratch: Path, nanny_parent: int | None) -> None:
        self.scratch, self.parent = scratch, nanny_parent
        self.scratch_peak = self.worker_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self) -> list[psutil.Process]:
        if self.parent is None:
            return []
        try:
            children = psutil.Process(self.parent).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        # `dask worker --nworkers N` runs N nannies in its own process; each spawns one
        # worker process, a child of that process (and a resource tracker, a few MB).
        return children

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scratch_peak = max(self.scratch_peak, _tree_bytes(self.scratch))
            for worker in self._workers():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.worker_peak = max(self.worker_peak, worker.memory_info().rss)
            time.sleep(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _coordinator(env: dict[str, str]) -> tuple[float, float, dict[str, int]]:
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.distributed_case", "bench"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    out = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"the export failed: {error[-3000:]}")
    return wall, usage.ru_maxrss / 1024, json.loads(out.strip().splitlines()[-1])


def _build(dsn: str, rows: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS wide")
        conn.execute(WIDE.format(name="wide", rows=rows))
        conn.execute("VACUUM ANALYZE wide")
        size = conn.execute("SELECT pg_total_relation_size('wide')").fetchone()
    return int(size[0]) if size else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="the smaller tenant")
    parser.add_argument("--factor", type=int, default=4, help="the bigger tenant, in times")
    parser.add_argument("--part-rows", type=int, default=250_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="offboard-distributed-"))
    cluster = PostgresCluster()
    server = PrefectServer(work / "prefect")
    runs: list[Run] = []
    table_bytes: dict[int, int] = {}
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE tenants (id text PRIMARY KEY, name text, region text, "
                "contact_email text)"
            )
            conn.execute("INSERT INTO tenants VALUES ('bench', 'Bench', 'eu', 'dpo@bench.example')")
        server.start()
        for rows in (args.rows, args.rows * args.factor):
            table_bytes[rows] = _build(cluster.dsn, rows)
            print(f"built wide: {rows:,} rows, {table_bytes[rows] / 1e9:.2f} GB", flush=True)
            modes: list[tuple[str, int]] = [("single process, 2 threads", 0)]
            modes += [
                (f"Dask, {n} worker process(es)", n) for n in map(int, args.workers.split(","))
            ]
            for mode, workers in modes:
                home = work / "home"
                env = {
                    **{k: v for k, v in server.env().items()},
                    "OFFBOARD_HOME": str(home),
                    "OFFBOARD_DATABASE_URL": cluster.dsn,
                    "OFFBOARD_GLOBAL_TABLES": "{}",
                    "OFFBOARD_FILE_REFERENCE_COLUMNS": "[]",
                    "OFFBOARD_EXPORT_SPLIT_ROWS": str(args.part_rows),
                    "OFFBOARD_EXPORT_SPLIT_BYTES": str(2**40),
                    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
                }
                # One cluster per configuration, its runs one after another on it.
                dask = DaskCluster(work / "dask", workers=workers, env=env) if workers else None
                try:
                    if dask:
                        dask.start()
                    attempts = [_measure(home, env, mode, rows, dask) for _ in range(args.repeat)]
                finally:
                    if dask:
                        dask.stop()
                run = _median(attempts)
                runs.append(run)
                print(
                    f"{rows:>11,} rows  {mode:<28} {run.wall:6.1f}s  coordinator "
                    f"{run.coordinator_mb:5.0f} MB  "
                    f"worker {run.worker_mb:5.0f} MB  scratch peak {run.scratch_mb:6.0f} MB "
                    f"of {run.parquet_mb:6.0f} MB in {run.parts} parts",
                    flush=True,
                )
    finally:
        server.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = _report(args, runs, table_bytes)
    print(report)
    record(report, (HEADING,))


def _measure(
    home: Path, env: dict[str, str], mode: str, rows: int, dask: DaskCluster | None
) -> Run:
    """One run of the export task, on the Dask cluster if one is given."""
    shutil.rmtree(home, ignore_errors=True)
    env = {**env, "OFFBOARD_EXPORT_CLUSTER": dask.address} if dask else env
    parent = dask._processes[1].process.pid if dask and dask._processes[1].process else None
    with Sampler(home / "scratch", parent) as sampler:
        wall, rss, result = _coordinator(env)
    assert result["rows"] == result["expected_rows"] == rows + 1, result  # + the registry's
    return Run(
        mode, rows, wall, rss, sampler.worker_peak / 2**20, sampler.scratch_peak / 2**20,
        result["parts"], result["bytes"] / 2**20,
    )  # fmt: skip


def _median(attempts: list[Run]) -> Run:
    """Each measure's median over the runs of one configuration."""
    first = attempts[0]
    return Run(
        first.mode, first.rows,
        *(statistics.median(getattr(a, name) for a in attempts)
          for name in ("wall", "coordinator_mb", "worker_mb", "scratch_mb")),
        first.parts, first.parquet_mb,
    )  # fmt: skip


def _report(args: argparse.Namespace, runs: list[Run], table_bytes: dict[int, int]) -> str:
    lines = [
        f"\n{HEADING} (`make bench-scale`)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, the database on the "
        "same two cores. The offboard flow's export task on the wide table, parts of "
        f"{args.part_rows:,} rows; wall includes the process start and, with Dask, the task "
        "runner's connection; scratch is every worker's scratch at its fullest moment. "
        f"Medians of {args.repeat} runs, one after another on one cluster per configuration "
        "(a cluster's first run also pays its workers' imports).\n",
        "| tenant rows | table (GB) | mode | wall (s) | vs single | coordinator peak RSS (MB) "
        "| worker peak RSS (MB) | peak scratch (MB) | Parquet written (MB) | parts |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        single = next(r for r in runs if r.rows == run.rows and r.mode.startswith("single"))
        lines.append(
            f"| {run.rows:,} | {table_bytes[run.rows] / 1e9:.2f} | {run.mode} | {run.wall:.1f} "
            f"| x{run.wall / single.wall:.2f} | {run.coordinator_mb:.0f} | "
            f"{f'{run.worker_mb:.0f}' if run.worker_mb else '-'} | {run.scratch_mb:.0f} | "
            f"{run.parquet_mb:.0f} | {run.parts} |"
        )
    small, big = sorted(table_bytes)
    coordinator = {
        rows: max(r.coordinator_mb for r in runs if r.rows == rows and r.mode.startswith("Dask"))
        for rows in (small, big)
    }
    scratch = {
        rows: max(r.scratch_mb for r in runs if r.rows == rows and r.mode.startswith("Dask"))
        for rows in (small, big)
    }
    rates = []
    for mode in dict.fromkeys(r.mode for r in runs):
        first = next(r for r in runs if r.mode == mode and r.rows == small)
        second = next(r for r in runs if r.mode == mode and r.rows == big)
        rate = (table_bytes[big] - table_bytes[small]) / 1e6 / (second.wall - first.wall)
        rates.append(f"{mode} {rate:.0f} MB/s")
    lines.append(
        "\nThroughput between the two sizes (table bytes over the extra wall time, so start-up "
        "cancels out): " + "; ".join(rates) + "."
    )
    lines.append(
        f"\n{args.factor} times the tenant: the coordinator's peak memory x"
        f"{coordinator[big] / coordinator[small]:.2f}, the workers' peak scratch x"
        f"{scratch[big] / max(scratch[small], 1):.2f} (Dask runs; the single process keeps "
        "every part in scratch until packaging).\n"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
