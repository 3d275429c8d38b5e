"""Twenty tenants offboarded at once on this machine, through a real Prefect server.

`make bench-concurrent` (or `python -m benchmarks.concurrent_cases [--tenants N] [--repeat R]`):
the demo platform plus N + 1 generated tenants. Each round, on a fresh environment: one tenant
offboarded alone (the baseline), then the N others at once; one contract-terminated event each;
every case acknowledged as soon as it waits; every destruction run to its certificate. Reports,
medians of R rounds (3 by default): the N at once against N times one alone, peak memory of
every process the pipeline started (sampled from /proc), whether every case completed with zero
left and its neighbours unchanged, and the most exports and destructions seen running at once
against the global concurrency limits. About 15 minutes. Replaces its section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from threading import Event, Thread
from typing import Any

from benchmarks.results import record
from benchmarks.run import machine

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
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians reported")
    args = parser.parse_args()
    rounds = []
    for number in range(args.repeat):
        rounds.append(_round(args.tenants, args.users))
        print(f"round {number + 1}: {rounds[-1]}", flush=True)
    report = _report(args, rounds)
    print(report)
    record(report, ("## 20 tenants offboarded at once",))


def _round(count: int, users: int) -> dict[str, Any]:
    """One round on a fresh environment: one more tenant offboarded alone (the baseline), then
    `count` tenants at once."""
    import shutil

    from offboarding.core.config import Settings
    from offboarding.dev.demo import platform
    from offboarding.dev.demo.run import DemoEnvironment
    from offboarding.stores import open_store

    tenants = tuple(
        platform.DemoTenant(f"load-{n:02d}", f"Load {n}", "europe-west1",
                            f"dpo@load-{n:02d}.example", "pro", users)
        for n in range(count + 1)
    )  # fmt: skip
    alone, together = tenants[:1], tenants[1:]
    home = HERE / ".concurrent"
    shutil.rmtree(home, ignore_errors=True)
    env = DemoEnvironment(home=home, grace_seconds=1, extra_tenants=tenants)
    with ExitStack() as stack:
        env.start(stack, say=lambda message: print(f"[setup] {message}", flush=True))
        assert env.server is not None and env.runner is not None and env.runner.process
        settings = Settings()
        files = open_store(settings.store_url("files"))
        bystanders = [t for t in platform.tenant_ids(env.pg.dsn) if not t.startswith("load-")]
        before = {t: platform.tenant_fingerprint(env.pg.dsn, files, t) for t in bystanders}
        solo = _offboard(env, [t.id for t in alone])
        sampler = MemorySampler([env.runner.process.pid])
        Thread(target=sampler.run, daemon=True).start()
        elapsed = _offboard(env, [t.id for t in together])
        sampler.stop()
        exports, destructions = _overlaps()
        left = 0
        for tenant in tenants:
            fingerprint = platform.tenant_fingerprint(env.pg.dsn, files, tenant.id)
            left += (
                sum(t["rows"] for t in fingerprint["tables"].values())
                + fingerprint["files"]["count"]
            )
        after = {t: platform.tenant_fingerprint(env.pg.dsn, files, t) for t in bystanders}
        certificates = list((home / "stores" / "archive" / "certificates").rglob("*.json"))
    return {
        "alone": solo, "together": elapsed, "peak_mb": sampler.peak_bytes / 2**20,
        "certificates": len(certificates), "cases": len(tenants), "left": left,
        "unchanged": before == after, "exports": exports, "destructions": destructions,
        "export_limit": settings.export.concurrency,
        "destruction_limit": settings.destruction.concurrency,
    }  # fmt: skip


def _offboard(env: Any, tenants: list[str]) -> float:
    """Send each tenant's contract-terminated event at once, acknowledge every case as soon as
    it waits, run every destruction to its certificate: the seconds from the first event to
    the last certificate."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.flow_runs import resume_flow_run

    from flows.adapter import emit_contract_terminated
    from offboarding.core.config import Settings
    from offboarding.dev.demo.run import wait_for_state
    from offboarding.people import keep_statement
    from offboarding.runs import AcknowledgementInput

    flow = FlowFilter(name=FlowFilterName(any_=["offboard"]))
    settings = Settings()
    started = time.monotonic()
    for tenant in tenants:
        emit_contract_terminated(tenant)  # no reason: it would be a kept statement's reference
    runs: dict[str, Any] = {}
    deadline = started + 120  # the trigger opens each case within seconds
    with get_client(sync_client=True) as client:
        while len(runs) < len(tenants):
            for run in client.read_flow_runs(flow_filter=flow, limit=200):
                if str(run.parameters["tenant"]) in tenants:
                    runs.setdefault(str(run.parameters["tenant"]), run)
            if time.monotonic() > deadline:
                missing = sorted(set(tenants) - set(runs))
                raise RuntimeError(
                    f"no offboard run for {missing} within 120 s of its event; the runner's "
                    f"log ends:\n{env.runner.log_tail()}"
                )
            time.sleep(0.5)
    for tenant in sorted(runs):
        run = wait_for_state(runs[tenant].id, {"PAUSED"}, timeout=1800, runner=env.runner)
        said = keep_statement(settings, tenant, "acknowledgement", name="load test")
        given = AcknowledgementInput(statement=said, days_until_destruction=0)
        resume_flow_run(run.id, run_input=given.as_run_input())
    for tenant in runs:
        wait_for_state(runs[tenant].id, {"COMPLETED"}, timeout=1800, runner=env.runner)
    with get_client(sync_client=True) as client:
        destroys = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["destroy"])), limit=200
        )
    ours = tuple(f"{t}-" for t in tenants)
    _finish_all(env, [r.id for r in destroys if str(r.parameters.get("case_id")).startswith(ours)])
    return time.monotonic() - started


def _finish_all(env: Any, run_ids: list[Any], timeout: float = 1800) -> None:
    """Every destroy run to its certificate, each attested system confirmed as soon as its run
    asks (as the acknowledgements are), the way support staff do in the run's Resume form."""
    from prefect import get_client

    from offboarding.core.errors import NotWaitingError
    from offboarding.dev.demo.run import attest_waiting

    pending, deadline = set(run_ids), time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while pending:
            for run_id in sorted(pending, key=str):
                state = client.read_flow_run(run_id).state
                if state is not None and state.type.value == "COMPLETED":
                    pending.discard(run_id)
                elif state is not None and state.is_final():
                    raise RuntimeError(
                        f"destroy run {run_id} ended {state.name}: {state.message}; the "
                        f"runner's log ends:\n{env.runner.log_tail()}"
                    )
                elif state is not None and state.is_paused():
                    with suppress(NotWaitingError):  # resumed meanwhile: read it again
                        attest_waiting(run_id)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} destroy runs unfinished after {timeout:.0f} s")
            time.sleep(0.5)


def _overlaps() -> tuple[int, int]:
    """The most exports, and the most destructions, seen running at once (from the task runs)."""
    from prefect import get_client

    from offboarding.locations import DEFAULT_ORDER

    tasks: list[Any] = []
    with get_client(sync_client=True) as client:
        while batch := client.read_task_runs(limit=200, offset=len(tasks)):
            tasks += batch
    exports = [(t.start_time, t.end_time) for t in tasks
               if t.name.startswith("export-") and t.start_time and t.end_time]  # fmt: skip
    # A destroy run's steps run one after another, so the most of them running at once is the
    # most runs destroying at once. (Not a run's first step to its last: a run resumed after
    # an attestation runs again from its start, its finished steps read from their cached
    # results, after a wait in which it held no slot.)
    steps = tuple(f"{verb}-{n}-" for verb in ("destroy", "verify") for n in DEFAULT_ORDER)
    destructions = [(t.start_time, t.end_time) for t in tasks
                    if t.name.startswith(steps) and t.start_time and t.end_time]  # fmt: skip
    return _max_overlap(exports), _max_overlap(destructions)


def _report(args: argparse.Namespace, rounds: list[dict[str, Any]]) -> str:
    alone = statistics.median(r["alone"] for r in rounds)
    together = statistics.median(r["together"] for r in rounds)
    peak = statistics.median(r["peak_mb"] for r in rounds)
    first = rounds[0]
    return (
        f"\n## {args.tenants} tenants offboarded at once (`make bench-concurrent`)\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. Each generated "
        f"tenant: {args.users} users with their spaces, posts, "
        "comments, documents and files; one event each, all sent at once; acknowledged as soon "
        "as waiting, destroyed after 1 s, each attested system confirmed as soon as asked. "
        "Each round on a fresh environment: first one more "
        f"such tenant offboarded alone (the baseline), then the {args.tenants} at once. Medians "
        f"of {len(rounds)} rounds; the checks hold in every round.\n\n"
        "| measure | value |\n|---|---|\n"
        f"| cases completed (certificates), every round | "
        f"{min(r['certificates'] for r in rounds)} of {first['cases']} |\n"
        f"| one tenant alone, event to certificate | {alone:.0f} s |\n"
        f"| {args.tenants} at once, first event to last certificate | {together:.0f} s |\n"
        f"| {args.tenants} at once against {args.tenants} times one alone | "
        f"{together / (args.tenants * alone):.2f}x |\n"
        f"| peak RSS of the runner and every flow process | {peak:.0f} MB |\n"
        f"| rows and files of the offboarded tenants left | {max(r['left'] for r in rounds)} |\n"
        f"| other tenants unchanged | {all(r['unchanged'] for r in rounds)} |\n"
        f"| most exports at once (limit {first['export_limit']}) | "
        f"{max(r['exports'] for r in rounds)} |\n"
        f"| most destructions at once (limit {first['destruction_limit']}) | "
        f"{max(r['destructions'] for r in rounds)} |\n"
    )


if __name__ == "__main__":
    main()
