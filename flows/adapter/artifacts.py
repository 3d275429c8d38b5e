"""The artifacts support staff read in the Prefect UI (counts, sizes, dates and digests only:
principle 1), the export's progress, and the export's parts fanned out on a Dask cluster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import Task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE
from prefect.futures import as_completed

from exporters.bundle import PartPlan
from flows.adapter.runs import logger
from offboarding.core.records import CaseRef, ExportedPart
from offboarding.export.export import FanOut
from offboarding.export.packaging import PartWritten, WriteParts
from offboarding.locations.base import ExportProgress, PartTask


def _artifact_key(*parts: str) -> str:
    """Artifact keys: lowercase letters, digits and dashes only."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text)


def publish_case_summary(case: CaseRef, facts: dict[str, Any], title: str = "Case") -> None:
    lines = [f"# {title} {case.case_id}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_text(value)} |" for name, value in facts.items()]
    create_markdown_artifact(
        "\n".join(lines),
        key=_artifact_key("case", case.case_id),
        description=f"{title} {case.case_id}: ids, counts and dates only",
    )


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    return str(value).replace("|", "/")


def publish_table(case: CaseRef, name: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(
        [{k: _text(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows],
        key=_artifact_key(name, case.case_id),
        description=description,
    )


@dataclass
class Progress:
    """A progress artifact for one run, moved through named steps."""

    steps: Sequence[str]
    artifact: UUID | None = None

    def start(self, case: CaseRef, what: str) -> Progress:
        artifact = create_progress_artifact(
            0.0, key=_artifact_key("progress", what, case.case_id), description=f"{what} progress"
        )
        assert isinstance(artifact, UUID)  # called from sync flows only
        self.artifact = artifact
        return self

    def done(self, step: str) -> None:
        if self.artifact is not None:
            position = list(self.steps).index(step) + 1
            update_progress_artifact(
                self.artifact,
                100.0 * position / len(self.steps),
                description=f"{step} done ({position} of {len(self.steps)})",
            )


# Part tasks are cheap to redo and hold nothing worth caching: no cache, no persisted result.
NO_CACHE = NONE


def fan_out_on_cluster(address: str, part_task: Task[..., ExportedPart], case: CaseRef) -> FanOut:
    """Run a location's part tasks on the Dask cluster at `address` through Prefect's Dask
    task runner: each is a task run of its own in the UI, retried by Prefect when it fails,
    and rescheduled by Dask on another worker when its worker process dies. Parts come back
    in the order of the tasks; `progress` hears of each as it finishes."""

    def run(tasks: list[PartTask], progress: ExportProgress | None) -> list[ExportedPart]:
        from prefect_dask.task_runners import DaskTaskRunner

        if not tasks:
            return []
        done: dict[int, ExportedPart] = {}
        rows = 0
        if progress is not None:
            progress(0, len(tasks), 0)
        with DaskTaskRunner(address=address) as runner:
            futures = {
                runner.submit(part_task, parameters={"case": case, "part": task}): index
                for index, task in enumerate(tasks)
            }
            for future in as_completed(list(futures)):
                part = future.result()
                done[futures[future]] = part
                rows += part.rows or 0
                if progress is not None:
                    progress(len(done), len(tasks), rows)
        return [done[index] for index in range(len(tasks))]

    return run


def write_parts_on_cluster(
    address: str, part_task: Task[..., PartWritten], case: CaseRef, generations: dict[str, Any]
) -> WriteParts:
    """Write a planned bundle's parts on the Dask cluster at `address`, one task run per part
    (retried by Prefect, rescheduled by Dask when its worker dies): each worker opens the
    part's sources in the staging area or the files store (at the generations the inventory
    saw) and checks every entry against the signed plan as it writes it."""

    def run(parts: list[PartPlan]) -> list[PartWritten]:
        from prefect_dask.task_runners import DaskTaskRunner

        def sources(part: PartPlan) -> dict[str, Any]:
            stored = (
                ref for kind, _, ref in (s.partition(":") for s in part.sources) if kind == "store"
            )
            return {ref: generations.get(ref) for ref in stored}

        with DaskTaskRunner(address=address) as runner:
            futures = [
                runner.submit(
                    part_task,
                    parameters={"case": case, "part": part, "generations": sources(part)},
                )
                for part in parts
            ]
            return [future.result() for future in futures]

    return run


class PartsProgress:
    """A progress artifact of the export's parts, updated as workers finish them (every 2% at
    most). A failed update is logged, never fatal: the UI is not worth an export."""

    def __init__(self, case: CaseRef) -> None:
        self.case = case
        self.artifact: UUID | None = None
        self.shown = -1.0

    def __call__(self, done: int, total: int, rows: int) -> None:
        percent = 100.0 * done / total if total else 100.0
        if self.artifact is not None and percent < 100.0 and percent - self.shown < 2.0:
            return
        description = f"{done} of {total} table parts exported, {rows:,} rows"
        try:
            if self.artifact is None:
                artifact = create_progress_artifact(
                    percent,
                    key=_artifact_key("progress", "export", self.case.case_id),
                    description=description,
                )
                assert isinstance(artifact, UUID)
                self.artifact = artifact
            else:
                update_progress_artifact(self.artifact, percent, description=description)
            self.shown = percent
        except Exception as error:
            logger().warning("export progress not shown: %s", error)


def link_to_certificate(case: CaseRef, url: str) -> None:
    create_link_artifact(
        url,
        link_text=f"Certificate of destruction {case.case_id}",
        key=_artifact_key("certificate", case.case_id),
        description="The signed certificate in the write-once archive",
    )


# Driving a server from outside a run: the demo, `offboard serve-local`'s checks and the tests.
