"""Packaging a bundle of many parts: the project's ZIP parts written one at a time and
`export.bundle_workers` at once, against `zip -0` (one archive, one process; and one archive
per part, as many processes at once as the project has writers), on the same files in the
same run. The floor is reading the files: `cat` of every file to /dev/null, in as many
processes.

    make bench-bundle    (about 5 minutes; replaces its section of RESULTS.md)

The files (incompressible 2 MiB documents and 4 KiB notes) stay in the page cache, so the
measure is of the work each tool does on them: ZIP framing, CRC-32, and, for the project, the
SHA-256 of every entry checked against the signed plan, and of every part. Each run's bundle
is verified afterwards (outside the clock) by the project's independent reader.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.results import record
from benchmarks.run import machine, make_files, measured
from exporters.bundle import plan_parts, verify_bundle
from offboarding.core.signing import Signer


def _run(argv: list[str], cwd: Path, stdin: bytes | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of one command."""
    run = measured(argv, cwd=cwd, stdin=stdin)
    return run.wall, run.rss_mb, run.cpu


def _parallel(
    commands: list[tuple[list[str], bytes]], cwd: Path, at_once: int
) -> tuple[float, float, float]:
    """Wall seconds of the commands, `at_once` of them running at a time, (no RSS: 0) and
    their CPU seconds."""
    started = time.perf_counter()
    waiting = list(commands)
    running: list[subprocess.Popen[bytes]] = []
    cpu = 0.0
    while waiting or running:
        while waiting and len(running) < at_once:
            argv, stdin = waiting.pop(0)
            process = subprocess.Popen(
                argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
            )
            assert process.stdin
            process.stdin.write(stdin)
            process.stdin.close()
            running.append(process)
        pid, status, usage = os.wait3(0)
        cpu += usage.ru_utime + usage.ru_stime
        running = [p for p in running if p.pid != pid]
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError("a parallel command failed")
    return time.perf_counter() - started, 0.0, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=2048, help="megabytes of files")
    parser.add_argument("--part-mb", type=int, default=128, help="bundle part size")
    parser.add_argument("--workers", type=int, default=2, help="writers at once (and peers)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="offboard-bench-bundle-"))
    source = work / "files"
    try:
        make_files(source, args.mb)
        files = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
        sizes = [(source / f).stat().st_size for f in files]
        total = sum(sizes)
        part_bytes = args.part_mb * 1024**2
        # The same grouping as the project's parts, for zip's one-archive-per-part runs.
        assignment = plan_parts(sizes, part_bytes)
        groups: dict[int, list[str]] = {}
        for name, part in zip(files, assignment, strict=True):
            groups.setdefault(part, []).append(name)
        out = work / "out"
        ours = [sys.executable, "-m", "benchmarks.bundle_files", str(source), str(out)]
        tools = {
            "floor: cat of every file to /dev/null": lambda: _parallel(
                [(["xargs", "cat"], "\n".join(g).encode()) for g in groups.values()],
                source, args.workers,
            ),
            "zip -0, one archive, one process": lambda: _run(
                ["zip", "-0", "-q", str(out / "all.zip"), "-@"], source, "\n".join(files).encode()
            ),
            f"zip -0, one archive per part, {args.workers} processes at once": lambda: _parallel(
                [(["zip", "-0", "-q", str(out / f"p{n}.zip"), "-@"], "\n".join(g).encode())
                 for n, g in groups.items()],
                source, args.workers,
            ),
            "tenant-offboarding, parts one at a time": lambda: _run(
                [*ours, "--part-bytes", str(part_bytes), "--workers", "1"], source
            ),
            f"tenant-offboarding, {args.workers} parts at once": lambda: _run(
                [*ours, "--part-bytes", str(part_bytes), "--workers", str(args.workers)], source
            ),
        }  # fmt: skip
        rss: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        walls: dict[str, list[float]] = {name: [] for name in tools}
        for attempt in range(args.repeat):
            for name, run in tools.items():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                wall, peak, seconds = run()
                walls[name].append(wall)
                cpu.setdefault(name, []).append(seconds)
                if peak:
                    rss.setdefault(name, []).append(peak)
                if name.startswith("tenant-offboarding"):
                    bundle = sorted(out.glob("bundle*.zip"))
                    report = verify_bundle(bundle, Signer.load_or_create(out / "keys").public_pem)
                    assert report.complete and len(bundle) == len(groups), (len(bundle), report)
                print(f"{attempt + 1}/{args.repeat} {name:<52} {walls[name][-1]:6.2f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(w) for name, w in walls.items()}
    zip_one = median["zip -0, one archive, one process"]
    lines = [
        "\n## Bundle parts written at once (`make bench-bundle`)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. {total / 1e6:,.0f} MB "
        f"of files ({len(files):,}: 2 MiB documents and 4 KiB notes, incompressible) in "
        f"{len(groups)} parts of {args.part_mb} MiB; the files in the page cache; medians of "
        f"{args.repeat}. Every bundle the project wrote was verified afterwards.\n",
        "| tool | wall (s) | MB/s | CPU (s) | peak RSS (MB) | ratio to zip -0, one process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, wall in sorted(median.items(), key=lambda item: item[1]):
        peak = f"{statistics.median(rss[name]):.0f}" if name in rss else "-"
        lines.append(
            f"| {name} | {wall:.2f} | {total / 1e6 / wall:,.0f} | "
            f"{statistics.median(cpu[name]):.2f} | {peak} | {wall / zip_one:.2f} |"
        )
    one = median["tenant-offboarding, parts one at a time"]
    many = median[f"tenant-offboarding, {args.workers} parts at once"]
    peer = median[f"zip -0, one archive per part, {args.workers} processes at once"]
    lines.append(
        f"\n{args.workers} writers against one: x{one / many:.2f} faster (zip's processes: "
        f"x{zip_one / peer:.2f}). Against zip at its parallel best: {many / peer:.2f}x; against "
        f"reading the files: {many / median['floor: cat of every file to /dev/null']:.2f}x.\n"
    )
    report = "\n".join(lines)
    print(report)
    record(report, ("## Bundle parts written at once",))


if __name__ == "__main__":
    main()
