"""What the pipeline asks of Prefect beyond running flows: its work pool and concurrency limits,
the contract-terminated event, and the artifacts support staff read in the UI.

Artifacts carry ids, counts, sizes, dates and digests only: table names are schema, not data;
file names and addresses never appear (principle 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from offboarding.config import Settings, validate_tenant_id
from offboarding.records import CaseRef, Inventory

__all__ = [
    "CONTRACT_TERMINATED",
    "DESTRUCTION_LIMIT_NAME",
    "EXPORT_LIMIT_NAME",
    "WORK_POOL",
    "Progress",
    "contract_terminated_event",
    "emit_contract_terminated",
    "inventory_rows",
    "link_to_certificate",
    "publish_case_summary",
    "publish_table",
    "set_up_prefect",
]

CONTRACT_TERMINATED = "tenant.contract.terminated"
WORK_POOL = "offboarding"
EXPORT_LIMIT_NAME = "offboarding-exports"
DESTRUCTION_LIMIT_NAME = "offboarding-destructions"


def set_up_prefect(settings: Settings) -> None:
    """Create (or update) the process work pool and the two global concurrency limits."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for name, limit in (
            (EXPORT_LIMIT_NAME, settings.export_concurrency),
            (DESTRUCTION_LIMIT_NAME, settings.destruction_concurrency),
        ):
            client.upsert_global_concurrency_limit_by_name(name, limit)
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))


def contract_terminated_event(tenant: str, reason: str) -> dict[str, Any]:
    """The event a platform emits when a contract ends (its documented payload)."""
    return {
        "event": CONTRACT_TERMINATED,
        "resource": {"prefect.resource.id": f"tenant.{tenant}", "tenant.id": tenant},
        "payload": {"reason": reason},
    }


def emit_contract_terminated(tenant: str, reason: str) -> UUID:
    """Emit the event through Prefect's API (waits until it is sent); return its id."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    validate_tenant_id(tenant)
    event = emit_event(**contract_terminated_event(tenant, reason))
    EventsWorker.drain_all()
    if event is None:
        from offboarding.errors import ConfigurationError

        raise ConfigurationError(
            "the event could not be sent: set PREFECT_API_URL to the Prefect server's API"
        )
    return event.id


def _artifact_key(*parts: str) -> str:
    """Artifact keys: lowercase letters, digits and dashes only."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text)


def publish_case_summary(case: CaseRef, facts: dict[str, Any], title: str = "Case") -> None:
    from prefect.artifacts import create_markdown_artifact

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
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        [{k: _text(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows],
        key=_artifact_key(name, case.case_id),
        description=description,
    )


def inventory_rows(inventory: Inventory) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"what": t.qualified, "scope": t.scope, "rows": t.rows, "bytes (approx.)": t.bytes_estimate}
        for t in inventory.tables
    ]
    rows.append(
        {"what": "files", "scope": "tenant prefix and referenced", "rows": len(inventory.files),
         "bytes (approx.)": inventory.total_file_bytes}
    )  # fmt: skip
    return rows


@dataclass
class Progress:
    """A progress artifact for one run, moved through named steps."""

    steps: Sequence[str]
    artifact: UUID | None = None

    def start(self, case: CaseRef, what: str) -> Progress:
        from prefect.artifacts import create_progress_artifact

        artifact = create_progress_artifact(
            0.0, key=_artifact_key("progress", what, case.case_id), description=f"{what} progress"
        )
        assert isinstance(artifact, UUID)  # called from sync flows only
        self.artifact = artifact
        return self

    def done(self, step: str) -> None:
        from prefect.artifacts import update_progress_artifact

        if self.artifact is not None:
            position = list(self.steps).index(step) + 1
            update_progress_artifact(
                self.artifact,
                100.0 * position / len(self.steps),
                description=f"{step} done ({position} of {len(self.steps)})",
            )


def link_to_certificate(case: CaseRef, url: str) -> None:
    from prefect.artifacts import create_link_artifact

    create_link_artifact(
        url,
        link_text=f"Certificate of destruction {case.case_id}",
        key=_artifact_key("certificate", case.case_id),
        description="The signed certificate in the write-once archive",
    )
