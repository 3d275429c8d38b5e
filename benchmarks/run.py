"""Export benchmark: the project against its peers, on the same data, in the same run.

    make bench                     # full size: 5M-row wide table, 20M-row narrow table
    make bench BENCH_ARGS=--quick  # a tenth of that, one repeat

Builds the data in a private PostgreSQL cluster, runs every tool `--repeat` times (medians),
measures wall time and the peak RSS of each tool's process, prints ratios against DuckDB and
writes benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from benchmarks.results import record
from offboarding.dev.services import PostgresCluster

HERE = Path(__file__).resolve().parent
ROW_GROUP = 32_768
FLOOR = "floor: psql COPY binary to /dev/null"
PARALLEL_FLOOR = "floor: 2 psql COPY binary to /dev/null at once (each half the blocks)"
DECODE = "ADBC 1.8.0 rows decoded into Arrow and dropped (no Parquet)"
ENCODING = "Parquet encoding alone"  # CPU only: not a row of the tables
OURS = "tenant-offboarding (ADBC 1.8.0, parallel)"
MEMORY = "tenant-offboarding, parts of 2% of the wide table"

WIDE = """
CREATE TABLE {name} AS SELECT g::bigint AS id, 'bench'::text AS tenant_id,
  timestamptz '2024-01-01' + g * interval '1 second' AS created_at,
  'author ' || (g % 1000) AS author,
  substr(md5(g::text) || md5((g + 1)::text), 1, 40) AS title,
  repeat(md5(g::text), 9) || substr(md5((g * 7)::text), 1, 12) AS body,
  (g % 997) / 7.0::double precision AS score,
  jsonb_build_object('k', g % 100, 'tags', jsonb_build_array('a', 'b'), 'note', md5(g::text))
    AS payload,
  g % 2 = 0 AS flag
FROM generate_series(1, {rows}) g;
ALTER TABLE {name} ADD PRIMARY KEY (id);
"""
NARROW = """
CREATE TABLE {name} AS SELECT g::bigint AS id, 'bench'::text AS tenant_id, (g % 1000)::int AS n,
  timestamptz '2024-01-01' + g * interval '1 second' AS at
FROM generate_series(1, {rows}) g;
ALTER TABLE {name} ADD PRIMARY KEY (id);
"""


@dataclass
class Measure:
    tool: str
    table: str
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)  # the tool's processes
    server_cpu: list[float] = field(default_factory=list)  # every process of the cluster

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> tuple[float, float]:
        return statistics.median(self.client_cpu), statistics.median(self.server_cpu)

    @property
    def rss(self) -> float:
        return statistics.median(self.rss_mb)


# GNU time reports the peak RSS of the command alone: read from the kernel's accounting of a
# child forked from this process, it would include this process's own pages (Linux keeps the
# high-water mark across exec), so a small tool showed this runner's size.
TIME = shutil.which("time", path="/usr/bin:/bin")


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    rss_mb: float  # the command's peak RSS (0 where GNU time is missing)
    cpu: float  # user + system seconds


def measured(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> Run:
    """One command's wall time, peak RSS and CPU time."""
    with tempfile.NamedTemporaryFile(prefix="offboard-rss-") as peak:
        command = [TIME, "-f", "%M", "-o", peak.name, *argv] if TIME else argv
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None
        if stdin is not None:
            process.stdin.write(stdin)
        process.stdin.close()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"{argv[:3]} failed: {error[-2000:]}")
        if process.stderr:
            process.stderr.close()
        rss = int(Path(peak.name).read_text().split()[-1]) / 1024 if TIME else 0.0
    return Run(wall, rss, usage.ru_utime + usage.ru_stime)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command."""
    run = measured(argv, env=env)
    return run.wall, run.rss_mb


def build(dsn: str, wide: int, narrow: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE tenants (id text PRIMARY KEY)")
        conn.execute("INSERT INTO tenants VALUES ('bench')")
        for ddl, name, rows in (
            (WIDE, "wide", wide),
            (WIDE, "wide_tenth", wide // 10),
            (NARROW, "narrow", narrow),
        ):
            started = time.perf_counter()
            conn.execute(ddl.format(name=name, rows=rows))
            conn.execute(f"VACUUM ANALYZE {name}")
            print(
                f"built {name}: {rows:,} rows in {time.perf_counter() - started:.0f}s", flush=True
            )


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the cluster so far: the postmaster and its processes (backends,
    parallel workers), the ones that ended included (Linux adds them to their parent's)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
        except OSError:  # ended meanwhile
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def parallel_copy(dsn: str, table: str) -> list[str]:
    """Two binary COPYs to /dev/null at once, each of half the table's blocks (TID range
    scans): how fast two cores can take the rows out of the server, nothing decoded."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::bigint",
            (table,),
        ).fetchone()
    half = f"'({int(row[0]) // 2 if row else 0},0)'::tid"
    copies = [
        "psql -X -q -d " + shlex.quote(dsn) + " -c " + shlex.quote(
            f"COPY (SELECT * FROM {table} WHERE ctid {op} {half}) TO STDOUT (FORMAT binary)"
        ) + " > /dev/null"
        for op in ("<", ">=")
    ]  # fmt: skip
    return ["sh", "-c", f"{copies[0]} & first=$!; {copies[1]}; second=$?; "
            "wait $first && exit $second"]  # fmt: skip


def make_files(root: Path, megabytes: int) -> None:
    root.mkdir(parents=True)
    big = max(1, megabytes // 2)
    for n in range(big):  # 2 MiB files of incompressible bytes
        (root / "docs" / f"{n % 16:02d}").mkdir(parents=True, exist_ok=True)
        (root / "docs" / f"{n % 16:02d}" / f"file-{n}.bin").write_bytes(os.urandom(2 * 1024**2))
    for n in range(2000):  # and many small ones
        (root / "small" / f"{n % 20:02d}").mkdir(parents=True, exist_ok=True)
        (root / "small" / f"{n % 20:02d}" / f"note-{n}.txt").write_bytes(os.urandom(4096))


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024**2
    return f"{os.cpu_count()} cores ({model}), {memory} GiB RAM, {platform.platform()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wide", type=int, default=5_000_000)
    parser.add_argument("--narrow", type=int, default=20_000_000)
    parser.add_argument("--files-mb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, one repeat")
    parser.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--write", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    if args.quick:
        args.wide, args.narrow, args.files_mb, args.repeat = (
            args.wide // 10, args.narrow // 10, args.files_mb // 8, 1
        )  # fmt: skip

    work = Path(tempfile.mkdtemp(prefix="offboard-bench-"))
    cluster = PostgresCluster()
    try:
        cluster.start()
        dsn = cluster.dsn
        build(dsn, args.wide, args.narrow)
        results = run_all(dsn, work, args)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = render(results, args)
    print(report)
    record(report, OWN_SECTIONS, Path(args.write))


OWN_SECTIONS = ("# Export benchmark", "## wide table", "## narrow table", "## Memory against size",
                "## Bundling files")  # fmt: skip


def run_all(dsn: str, work: Path, args: argparse.Namespace) -> list[Measure]:
    peers = args.peers_python
    out = work / "out"
    tools: dict[str, Callable[[str], list[str]]] = {
        FLOOR: lambda t: [
            "psql", "-X", "-q", "-d", dsn, "-c",
            f"COPY (SELECT * FROM {t}) TO STDOUT (FORMAT binary)",
        ],
        PARALLEL_FLOOR: lambda t: parallel_copy(dsn, t),
        OURS: lambda t: [
            sys.executable, "-m", "benchmarks.ours", dsn, t, str(out)
        ],
        "DuckDB postgres extension to Parquet": lambda t: [
            peers, str(HERE / "peers.py"), "duckdb", dsn, t, str(out / "d.parquet"), str(ROW_GROUP)
        ],
        "ADBC 1.13.0 stream to Parquet (one connection)": lambda t: [
            peers, str(HERE / "peers.py"), "adbc", dsn, t, str(out / "a.parquet"), str(ROW_GROUP)
        ],
        # The same script on the project's pinned driver: what the -O0 wheels cost.
        "ADBC 1.8.0 stream to Parquet (one connection)": lambda t: [
            sys.executable, str(HERE / "peers.py"), "adbc", dsn, t, str(out / "b.parquet"),
            str(ROW_GROUP),
        ],
        DECODE: lambda t: [
            sys.executable, str(HERE / "peers.py"), "adbc-decode", dsn, t, "-", str(ROW_GROUP)
        ],
        "psycopg binary COPY rows to Parquet": lambda t: [
            sys.executable, "-m", "benchmarks.psycopg_rows", dsn, t, str(out / "p.parquet"),
            str(ROW_GROUP),
        ],
        "pg_dump -Fc": lambda t: ["pg_dump", "-Fc", "-t", t, "-d", dsn],
    }  # fmt: skip
    measures: dict[tuple[str, str], Measure] = {}
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    postmaster = _parent(int(row[0]) if row else 0)
    for table in ("wide", "narrow"):
        timed(tools[FLOOR](table), env)  # warm the cache
        for attempt in range(args.repeat):
            for tool, argv in tools.items():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                before = server_cpu(postmaster)
                run = measured(argv(table), env=env)
                m = measures.setdefault((tool, table), Measure(tool, table))
                m.walls.append(run.wall)
                m.rss_mb.append(run.rss_mb)
                m.client_cpu.append(run.cpu)
                m.server_cpu.append(server_cpu(postmaster) - before)
                done = f"{attempt + 1}/{args.repeat}"
                print(f"{table:<7} {done} {tool:<42} {run.wall:7.1f}s {run.rss_mb:6.0f} MB",
                      flush=True)  # fmt: skip
    for table in ("wide", "narrow"):
        encoding = Measure(ENCODING, table)
        for _ in range(args.repeat):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.encode", dsn, table, str(ROW_GROUP)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            encoding.client_cpu.append(float(done.stdout.strip()))
            encoding.server_cpu.append(0.0)
        measures[(ENCODING, table)] = encoding
    # Memory against size: the same export of the wide table and of a tenth of it, both split
    # into parts for both workers (so the only difference is the number of rows).
    split_env = {**env, "OFFBOARD_EXPORT_SPLIT_ROWS": str(max(args.wide // 50, 1_000))}
    for _ in range(args.repeat):
        for table in ("wide_tenth", "wide"):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            wall, rss = timed(tools[OURS](table), split_env)
            m = measures.setdefault((MEMORY, table), Measure(MEMORY, table))
            m.walls.append(wall)
            m.rss_mb.append(rss)
    source = work / "files"
    make_files(source, args.files_mb)
    for _ in range(args.repeat):
        for tool, argv in {
            "zip -0 -r": ["zip", "-0", "-r", "-q", str(work / "z.zip"), "."],
            "tenant-offboarding bundle (hashing included)": [
                sys.executable, "-m", "benchmarks.bundle_files", str(source), str(work / "bundle")
            ],
        }.items():  # fmt: skip
            (work / "z.zip").unlink(missing_ok=True)
            shutil.rmtree(work / "bundle", ignore_errors=True)
            start = time.perf_counter()
            process = subprocess.Popen(argv, cwd=source, env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(process.pid, 0)
            if os.waitstatus_to_exitcode(status):
                raise RuntimeError(f"{tool} failed")
            m = measures.setdefault((tool, "files"), Measure(tool, "files"))
            m.walls.append(time.perf_counter() - start)
            m.rss_mb.append(usage.ru_maxrss / 1024)
    return list(measures.values())


def cpu_budget(by: dict[tuple[str, str], Measure], table: str, duck: float) -> str:
    """Whether 0.8x DuckDB's time fits in the machine's CPU: a tool on `cores` cores takes at
    least (its CPU + the server's) / cores."""
    cores = os.cpu_count() or 1
    floor = by[(PARALLEL_FLOOR, table)].wall
    ours, decode = by[(OURS, table)], by[(DECODE, table)]
    client, server = ours.cpu
    encoding = by[(ENCODING, table)].cpu[0]
    budget = 0.8 * duck * cores
    return (
        f"0.8x DuckDB's time would be {0.8 * duck:.1f} s: {budget:.1f} CPU-seconds on "
        f"{cores} cores. Two COPYs to /dev/null, which decode and write nothing, take "
        f"{floor:.1f} s ({floor / duck:.2f}x DuckDB). The project used {client:.1f} s of CPU "
        f"and the server {server:.1f} s: at least {(client + server) / cores:.1f} s on "
        f"{cores} cores, against its {ours.wall:.1f} s. Decoding alone took "
        f"{decode.cpu[0]:.1f} s (ADBC, nothing written), which leaves "
        f"{budget - server - decode.cpu[0]:.1f} CPU-seconds for everything else. The Parquet "
        f"encoding and compression alone take {encoding:.1f} s (the rows already in memory, "
        f"written with the project's options); the project spends {client - decode.cpu[0]:.1f} "
        "s beyond decoding."
    )


def render(results: list[Measure], args: argparse.Namespace) -> str:
    by = {(m.tool, m.table): m for m in results}
    rows = {"wide": args.wide, "narrow": args.narrow, "wide_tenth": args.wide // 10}
    lines = [
        "# Export benchmark",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"Command: `make bench{' BENCH_ARGS=--quick' if args.quick else ''}` "
        f"(wide {args.wide:,} rows, narrow {args.narrow:,} rows, files {args.files_mb} MB, "
        f"medians of {args.repeat}). PostgreSQL on loopback, warm cache; Parquet zstd level 1, "
        f"{ROW_GROUP:,}-row groups for every tool. Ratios: time / DuckDB's time.",
        "",
    ]
    for table in ("wide", "narrow"):
        duck = by[("DuckDB postgres extension to Parquet", table)].wall
        lines += [
            f"## {table} table ({rows[table]:,} rows)",
            "",
            "| tool | wall (s) | rows/s | peak RSS (MB) | CPU: tool (s) | CPU: server (s) "
            "| ratio to DuckDB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        listed = [m for m in results if m.table == table and m.tool not in (MEMORY, ENCODING)]
        for m in sorted(listed, key=lambda m: m.wall):
            lines.append(
                f"| {m.tool} | {m.wall:.1f} | {rows[table] / m.wall:,.0f} | {m.rss:.0f} | "
                f"{m.cpu[0]:.1f} | {m.cpu[1]:.1f} | {m.wall / duck:.2f} |"
            )
        lines += ["", cpu_budget(by, table, duck), ""]
    small, big = by[(MEMORY, "wide_tenth")], by[(MEMORY, "wide")]
    lines += [
        "## Memory against size (the project's export of the wide table)",
        "",
        "Both runs split the table into parts of 2% of the large one, so both workers run in "
        "both; only the number of rows differs.",
        "",
        "| rows | wall (s) | peak RSS (MB) |",
        "|---:|---:|---:|",
        f"| {rows['wide_tenth']:,} | {small.wall:.1f} | {small.rss:.0f} |",
        f"| {rows['wide']:,} | {big.wall:.1f} | {big.rss:.0f} |",
        "",
        f"Ten times the rows: peak RSS x{big.rss / small.rss:.2f}, "
        f"time x{big.wall / small.wall:.1f}. The export's RSS climbs for its first 2 s or so "
        "(allocator caches filling) and then stays level, so the smaller run ends before it "
        "settles; `make bench-scale` compares 5M and 50M rows, both well past it.",
        "",
        f"## Bundling files ({args.files_mb} MB)",
        "",
        "| tool | wall (s) | peak RSS (MB) | ratio to zip |",
        "|---|---:|---:|---:|",
    ]
    zip_wall = by[("zip -0 -r", "files")].wall
    for m in sorted((m for m in results if m.table == "files"), key=lambda m: m.wall):
        lines.append(f"| {m.tool} | {m.wall:.1f} | {m.rss:.0f} | {m.wall / zip_wall:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
