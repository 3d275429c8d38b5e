"""Twenty tenants offboarded at once on this machine, through a real Prefect server.

`make bench-concurrent` (or `python -m benchmarks.concurrent_cases [--tenants N]`): the demo
platform plus N generated tenants; one contract-terminated event each, all at once; every case
acknowledged as soon as it waits; every destruction run to its certificate. Reports total time,
peak memory of every process the pipeline started (sampled from /proc), whether every case
completed with zero left and its neighbours unchanged, and the most exports and destructions
seen running at once against the global concurrency limits. Replaces its section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform as host
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from threading import Event, Thread
from typing import Any

from benchmarks.results import record

HERE = Path(__file__).resolve().parent


@dataclass
class MemorySampler:
    """Peak summed RSS of a set of process trees, sampled every 0.2 s."""

    roots: list[int]
    peak_bytes: int = 0
    _stop: Event = field(default_factory=Event)

    def _tree(self) -> set[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        seen: set[int] = set()
        todo = list(self.roots)
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen.add(pid)
                todo += children.get(pid, [])
        return seen

    def _rss(self, pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, sum(self._rss(p) for p in self._tree()))
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--users", type=int, default=30, help="users per generated tenant")
    args = parser.parse_args()

    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.flow_runs import resume_flow_run

    from flows.adapter import emit_contract_terminated
    from offboarding.core.config import Settings
    from offboarding.dev.demo import platform
    from offboarding.dev.demo.run import DemoEnvironment, finish_destruction, wait_for_state
    from offboarding.locations import DEFAULT_ORDER
    from offboarding.people import keep_statement
    from offboarding.runs import AcknowledgementInput
    from offboarding.stores import open_store

    tenants = tuple(
        platform.DemoTenant(f"load-{n:02d}", f"Load {n}", "europe-west1",
                            f"dpo@load-{n:02d}.example", "pro", args.users)
        for n in range(args.tenants)
    )  # fmt: skip
    home = HERE / ".concurrent"
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    env = DemoEnvironment(home=home, grace_seconds=1, extra_tenants=tenants)
    with ExitStack() as stack:
        env.start(stack, say=lambda message: print(f"[setup] {message}", flush=True))
        assert env.server is not None and env.runner is not None and env.runner.process
        settings = Settings()
        files = open_store(settings.store_url("files"))
        bystanders = [t for t in platform.tenant_ids(env.pg.dsn) if not t.startswith("load-")]
        before = {t: platform.tenant_fingerprint(env.pg.dsn, files, t) for t in bystanders}
        sampler = MemorySampler([env.runner.process.pid])
        Thread(target=sampler.run, daemon=True).start()

        started = time.monotonic()
        for tenant in tenants:
            emit_contract_terminated(tenant.id)  # no reason: it would be a statement
        runs: dict[str, Any] = {}
        with get_client(sync_client=True) as client:
            while len(runs) < len(tenants):
                for run in client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=["offboard"])), limit=200
                ):
                    runs.setdefault(str(run.parameters["tenant"]), run)
                time.sleep(0.5)
        waiting = set(runs)
        while waiting:
            for tenant in sorted(waiting):
                run = wait_for_state(runs[tenant].id, {"PAUSED"}, timeout=1800, runner=env.runner)
                said = keep_statement(settings, tenant, "acknowledgement", name="load test")
                given = AcknowledgementInput(statement=said, days_until_destruction=0)
                resume_flow_run(run.id, run_input=given.as_run_input())
                waiting.discard(tenant)
        destroy_ids = []
        for tenant in runs:
            wait_for_state(runs[tenant].id, {"COMPLETED"}, timeout=1800, runner=env.runner)
        with get_client(sync_client=True) as client:
            destroys = [
                r for r in client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=["destroy"])), limit=200)
            ]  # fmt: skip
            destroy_ids = [r.id for r in destroys]
        for run_id in destroy_ids:
            finish_destruction(run_id, timeout=1800, runner=env.runner)
        elapsed = time.monotonic() - started
        sampler.stop()

        tasks: list[Any] = []
        with get_client(sync_client=True) as client:
            while batch := client.read_task_runs(limit=200, offset=len(tasks)):
                tasks += batch
        exports = [(t.start_time, t.end_time) for t in tasks
                   if t.name.startswith("export-") and t.start_time and t.end_time]  # fmt: skip
        per_run: dict[Any, list[Any]] = {}
        steps = tuple(f"{verb}-{n}-" for verb in ("destroy", "verify") for n in DEFAULT_ORDER)
        for t in tasks:
            if t.name.startswith(steps) and t.start_time and t.end_time:
                per_run.setdefault(t.flow_run_id, []).append(t)
        destructions = [(min(t.start_time for t in ts), max(t.end_time for t in ts))
                        for ts in per_run.values()]  # fmt: skip
        left = 0
        for tenant in runs:
            fingerprint = platform.tenant_fingerprint(env.pg.dsn, files, tenant)
            left += (
                sum(t["rows"] for t in fingerprint["tables"].values())
                + fingerprint["files"]["count"]
            )
        after = {t: platform.tenant_fingerprint(env.pg.dsn, files, t) for t in bystanders}
        certificates = list((home / "stores" / "archive" / "certificates").rglob("*.json"))

    report = (
        f"\n## {len(tenants)} tenants offboarded at once (`make bench-concurrent`)\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
        f"{host.platform()}. Each generated tenant: {args.users} users with their spaces, posts, "
        "comments, documents and files; one event each, all sent at once; acknowledged as soon "
        "as waiting, destroyed after 1 s.\n\n"
        "| measure | value |\n|---|---|\n"
        f"| cases completed (certificates) | {len(certificates)} of {len(tenants)} |\n"
        f"| total time, first event to last certificate | {elapsed:.0f} s |\n"
        f"| peak RSS of the runner and every flow process | {sampler.peak_bytes / 2**20:.0f} MB |\n"
        f"| rows and files of the offboarded tenants left | {left} |\n"
        f"| other tenants unchanged | {before == after} |\n"
        f"| most exports at once (limit {settings.export.concurrency}) | "
        f"{_max_overlap(exports)} |\n"
        f"| most destructions at once (limit {settings.destruction.concurrency}) | "
        f"{_max_overlap(destructions)} |\n"
    )
    print(report)
    record(report, ("## 20 tenants offboarded at once",))


if __name__ == "__main__":
    main()
