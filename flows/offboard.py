"""One offboarding case, from the contract's end to the scheduled destruction.

    freeze -> inventory -> export -> package -> verify -> deliver -> await ack -> schedule

Tasks persist their results (references, counts and digests only), so when the case resumes
after the acknowledgement, the flow re-runs from the top and every finished step is Cached.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.client.schemas.objects import State
from prefect.concurrency.sync import concurrency
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import flow_run
from prefect.states import Cancelled

from flows.inputs import Acknowledgement
from offboarding import case as stages
from offboarding.audit import AuditTrail
from offboarding.config import Settings
from offboarding.delivery import deliver, delivery_status
from offboarding.errors import DuplicateCaseError
from offboarding.orchestration import (
    EXPORT_LIMIT_NAME,
    Progress,
    inventory_rows,
    publish_case_summary,
    publish_table,
)
from offboarding.planning import destruction_schedule
from offboarding.records import (
    BundleRef,
    CaseRef,
    Delivery,
    DestructionSchedule,
    ExportResult,
    Inventory,
    StagedRecord,
)
from offboarding.registry import TenantRegistry
from offboarding.scheduling import schedule_destruction_run
from offboarding.signing import Signer


@task(name="freeze", task_run_name="freeze-{case.tenant}")
def freeze_tenant(case: CaseRef) -> datetime:
    return stages.freeze(Settings(), case)


@task(name="inventory", task_run_name="inventory-{case.tenant}", retries=2, retry_delay_seconds=5)
def take_inventory(case: CaseRef) -> StagedRecord:
    settings = Settings()
    inventory = stages.take_inventory(settings, case)
    get_run_logger().info(
        "inventory of %s: %d rows in %d tables, %d files (%d bytes)",
        case.tenant, inventory.total_rows, len(inventory.tables), len(inventory.files),
        inventory.total_file_bytes,
    )  # fmt: skip
    publish_table(
        case, "inventory", inventory_rows(inventory),
        f"What case {case.case_id} exports: tables with row counts and sizes, files in total",
    )  # fmt: skip
    return stages.stage(settings, case, "inventory", inventory)


@task(name="export", task_run_name="export-{case.tenant}", retries=1, retry_delay_seconds=5)
def export_snapshot(case: CaseRef, inventory: StagedRecord) -> StagedRecord:
    settings = Settings()
    exported = stages.export_snapshot(settings, case, stages.unstage(inventory, Inventory))
    return stages.stage(settings, case, "export", exported)


@task(name="package", task_run_name="package-{case.tenant}")
def package_bundle(case: CaseRef, inventory: StagedRecord, exported: StagedRecord) -> BundleRef:
    return stages.package(
        Settings(),
        case,
        stages.unstage(inventory, Inventory),
        stages.unstage(exported, ExportResult),
    )


@task(name="verify-bundle", task_run_name="verify-bundle-{case.tenant}")
def verify_bundle(case: CaseRef, bundle: BundleRef, inventory: StagedRecord) -> int:
    return stages.verify_package(Settings(), case, bundle, stages.unstage(inventory, Inventory))


@task(name="deliver", task_run_name="deliver-{case.tenant}", retries=2, retry_delay_seconds=10)
def deliver_bundle(case: CaseRef, bundle: BundleRef, flow_run_id: str) -> Delivery:
    delivery = deliver(Settings(), case, bundle, flow_run_id)
    get_run_logger().info(
        "bundle of %s delivered in %d part(s) to %s; contact notified; links valid until %s",
        case.tenant, len(delivery.parts), delivery.store_url, delivery.link_expires_at,
    )  # fmt: skip
    return delivery


def await_acknowledgement(case: CaseRef) -> Acknowledgement:
    """Suspend (the worker is freed) until the client's acknowledgement resumes the run."""
    get_run_logger().info("case %s is waiting for the client's acknowledgement", case.case_id)
    return suspend_flow_run(wait_for_input=Acknowledgement, key="acknowledgement", timeout=None)


@task(name="schedule-destruction", task_run_name="schedule-destruction-{case.tenant}")
def schedule_destruction(case: CaseRef, ack: Acknowledgement) -> DestructionSchedule | None:
    """Record the acknowledgement (or deemed delivery) and schedule destruction: one run per
    case whatever the retries and resumes. A tenant on legal hold gets no run until released."""
    settings = Settings()
    trail = AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))
    if ack.deemed_delivered:
        status = delivery_status(settings, case)
        recorded = trail.record(
            "deemed-delivered",
            {"at": datetime.now(UTC).isoformat(), "delivered_at": status.delivered_at.isoformat(),
             "notices_sent": len(trail.find("links-issued")),
             "acknowledgement_timeout_days": settings.acknowledgement_timeout / timedelta(days=1)},
            once="acknowledged",
        )  # fmt: skip
    else:
        # The archive may be retention-locked: a person's name goes in only as a digest, which
        # proves who acknowledged to anyone who knows the name, and can outlive the contact.
        recorded = trail.record(
            "acknowledged",
            {"by_sha256": hashlib.sha256(ack.acknowledged_by.encode()).hexdigest(),
             "at": datetime.now(UTC).isoformat(),
             "days_until_destruction": ack.days_until_destruction,
             "note_given": ack.note is not None},
            once="acknowledged",
        )  # fmt: skip
    acknowledged_at = datetime.fromisoformat(recorded.document["data"]["at"])
    grace = (
        timedelta(days=ack.days_until_destruction)
        if ack.days_until_destruction is not None
        else settings.destruction_grace
    )
    plan = destruction_schedule(
        acknowledged_at,
        grace,
        lead_time=max(settings.key_destroy_delay, settings.soft_delete_retention),
    )
    if TenantRegistry(settings).get(case.tenant).legal_hold:
        trail.record(
            "destruction-held",
            {"scheduled_for": plan.scheduled_for.isoformat(), "deadline": plan.deadline.isoformat(),
             "acknowledged_at": acknowledged_at.isoformat()},
            once="destruction-held",
        )  # fmt: skip
        get_run_logger().warning(
            "tenant %s is on legal hold: destruction is not scheduled until the hold is released",
            case.tenant,
        )
        return None
    run_id = schedule_destruction_run(
        case,
        acknowledged_at=acknowledged_at,
        scheduled_for=plan.scheduled_for,
        deadline=plan.deadline,
        idempotency_key=f"destroy-{case.case_id}",
    )
    trail.record(
        "destruction-scheduled",
        {"flow_run_id": run_id, "scheduled_for": plan.scheduled_for.isoformat(),
         "deadline": plan.deadline.isoformat(), "acknowledged_at": acknowledged_at.isoformat()},
        once="destruction-scheduled",
    )  # fmt: skip
    return DestructionSchedule(
        acknowledged_at=acknowledged_at,
        scheduled_for=plan.scheduled_for,
        deadline=plan.deadline,
        flow_run_id=run_id,
    )


STEPS = ("freeze", "inventory", "export", "package", "verify", "deliver", "acknowledgement",
         "schedule")  # fmt: skip


@flow(name="offboard", flow_run_name="offboard-{tenant}", persist_result=True)
def offboard(tenant: str, reason: str = "") -> dict[str, Any] | State:
    """Export a tenant's data, deliver it, wait for acknowledgement, schedule destruction.

    Args:
        tenant: The tenant's id, exactly as in the tenants registry (e.g. acme-corp).
        reason: Why the contract ended (optional, for the record).
    """
    case = stages.new_case(tenant, str(flow_run.id))
    progress = Progress(STEPS).start(case, "offboard")
    try:
        freeze_tenant(case)
    except DuplicateCaseError as duplicate:  # a second event for the same tenant
        get_run_logger().warning("%s", duplicate)
        return Cancelled(message=f"duplicate: tenant {tenant} already has case "
                                 f"{duplicate.existing_case}")  # fmt: skip
    progress.done("freeze")
    inventory = take_inventory(case)
    progress.done("inventory")
    # A global limit caps how many cases read the database at once (OFFBOARD_EXPORT_CONCURRENCY);
    # taken around the task, so the task runs (and shows as running) only once it has a slot.
    with concurrency(EXPORT_LIMIT_NAME, occupy=1):
        exported = export_snapshot(case, inventory)
    progress.done("export")
    bundle = package_bundle(case, inventory, exported)
    progress.done("package")
    verify_bundle(case, bundle, inventory)
    progress.done("verify")
    delivery = deliver_bundle(case, bundle, str(flow_run.id))
    progress.done("deliver")
    publish_case_summary(case, {
        "tenant": tenant, "state": "waiting for the client's acknowledgement",
        "delivered at": delivery.delivered_at, "links valid until": delivery.link_expires_at,
        "bundle parts": len(delivery.parts), "rows": inventory.counts.get("rows", 0),
        "files": inventory.counts.get("files", 0), "tables": inventory.counts.get("tables", 0),
        "deemed delivered on": delivery.delivered_at + Settings().acknowledgement_timeout,
    })  # fmt: skip
    ack = await_acknowledgement(case)
    progress.done("acknowledgement")
    schedule = schedule_destruction(case, ack)
    progress.done("schedule")
    publish_case_summary(case, {
        "tenant": tenant,
        "state": "destruction scheduled" if schedule else "on legal hold: nothing scheduled",
        "acknowledgement": "deemed delivered" if ack.deemed_delivered else "acknowledged",
        "destruction scheduled for": schedule.scheduled_for if schedule else "-",
        "deadline": schedule.deadline if schedule else "-",
        "destruction run": schedule.flow_run_id if schedule else "-",
        "rows": inventory.counts.get("rows", 0), "files": inventory.counts.get("files", 0),
    })  # fmt: skip
    return {
        "case_id": case.case_id,
        "bundle_parts": [p.sha256 for p in delivery.parts],
        "deemed_delivered": ack.deemed_delivered,
        "destruction_run": schedule.flow_run_id if schedule else None,
        "destruction_scheduled_for": schedule.scheduled_for.isoformat() if schedule else None,
        "deadline": schedule.deadline.isoformat() if schedule else None,
        "legal_hold": schedule is None,
    }
