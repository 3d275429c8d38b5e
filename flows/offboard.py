"""One offboarding case, from the contract's end to the scheduled destruction.

    freeze -> inventory -> export -> package -> verify -> deliver -> await ack -> schedule

Tasks persist their results (references, counts and digests only), so when the case resumes
after the acknowledgement, the flow re-runs from the top and every finished step is Cached.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.client.schemas.objects import State

from exporters.bundle import PartPlan
from flows import adapter
from offboarding.core.errors import DuplicateCaseError
from offboarding.core.records import (
    BundleRef,
    CaseRef,
    Delivery,
    DestructionSchedule,
    ExportedPart,
    ExportResult,
    Inventory,
    StagedRecord,
)
from offboarding.delivery.delivery import deliver
from offboarding.delivery.receipts import downloads
from offboarding.export import export as stages
from offboarding.export.packaging import PartWritten, write_bundle_part
from offboarding.locations.base import PartTask
from offboarding.runs import AcknowledgementInput, OptionalStatementRef
from offboarding.scheduling.scheduling import schedule_destruction as schedule_destruction_of


@task(name="freeze", task_run_name="freeze-{case.tenant}")
def freeze_tenant(case: CaseRef, reason_ref: str) -> datetime:
    return stages.freeze(adapter.settings(), case, reason_ref)


@task(name="inventory", task_run_name="inventory-{case.tenant}", retries=2, retry_delay_seconds=5)
def take_inventory(case: CaseRef) -> StagedRecord:
    settings = adapter.settings()
    inventory = stages.take_inventory(settings, case)
    adapter.logger().info(
        "inventory of %s: %d rows in %d tables, %d files (%d bytes)",
        case.tenant, inventory.total_rows, len(inventory.tables), len(inventory.files),
        inventory.total_file_bytes,
    )  # fmt: skip
    for warning in (w for location in inventory.locations for w in location.warnings):
        adapter.logger().warning("inventory of %s: %s", case.tenant, warning)  # schema only
    adapter.publish_table(
        case, "inventory", stages.inventory_rows(inventory),
        f"What case {case.case_id} exports: tables with row counts and sizes, files in total",
    )  # fmt: skip
    adapter.publish_table(
        case, "systems",
        [{"system": s.name, "handling": s.handling, "method": s.method, "what": s.description}
         for s in inventory.systems],
        f"Every system of the data map for case {case.case_id}: verified by a plug-in, or "
        "attested by a named role",
    )  # fmt: skip
    return stages.stage(settings, case, "inventory", inventory)


@task(
    name="export-part", task_run_name="export-{part.relative}", retries=2,
    retry_delay_seconds=5, cache_policy=adapter.NO_CACHE, persist_result=False,
)  # fmt: skip
def export_part(case: CaseRef, part: PartTask) -> ExportedPart:
    """One part of a distributed export, on a worker of the Dask cluster."""
    return stages.export_part(adapter.settings(), case, part)


@task(name="export", task_run_name="export-{case.tenant}", retries=1, retry_delay_seconds=5)
def export_snapshot(case: CaseRef, inventory: StagedRecord) -> StagedRecord:
    """The snapshot's coordinator: here, holding the snapshot open while the parts are
    written, by this process or, with OFFBOARD_EXPORT_CLUSTER, by the cluster's workers."""
    settings = adapter.settings()
    cluster = settings.export.cluster
    exported = stages.export_snapshot(
        settings, case, stages.unstage(inventory, Inventory), progress=adapter.PartsProgress(case),
        fan_out=adapter.fan_out_on_cluster(cluster, export_part, case) if cluster else None,
    )  # fmt: skip
    return stages.stage(settings, case, "export", exported)


@task(
    name="package-part", task_run_name="package-{part.name}", retries=2,
    retry_delay_seconds=5, cache_policy=adapter.NO_CACHE, persist_result=False,
)  # fmt: skip
def package_part(case: CaseRef, part: PartPlan, generations: dict[str, Any]) -> PartWritten:
    """One ZIP part of a planned bundle, on a worker of the Dask cluster."""
    return write_bundle_part(adapter.settings(), case, part, generations)


@task(name="package", task_run_name="package-{case.tenant}")
def package_bundle(case: CaseRef, inventory: StagedRecord, exported: StagedRecord) -> BundleRef:
    """The bundle planned and signed here; its parts written by this process or, with
    OFFBOARD_EXPORT_CLUSTER, by the cluster's workers."""
    settings = adapter.settings()
    frozen = stages.unstage(inventory, Inventory)
    cluster = settings.export.cluster
    elsewhere = (
        adapter.write_parts_on_cluster(cluster, package_part, case, stages.generations_of(frozen))
        if cluster
        else None
    )
    return stages.package(
        settings, case, frozen, stages.unstage(exported, ExportResult), elsewhere=elsewhere
    )


@task(name="verify-bundle", task_run_name="verify-bundle-{case.tenant}")
def verify_bundle(case: CaseRef, bundle: BundleRef, inventory: StagedRecord) -> int:
    return stages.verify_package(
        adapter.settings(), case, bundle, stages.unstage(inventory, Inventory)
    )


@task(name="deliver", task_run_name="deliver-{case.tenant}", retries=2, retry_delay_seconds=10)
def deliver_bundle(case: CaseRef, bundle: BundleRef, flow_run_id: str) -> Delivery:
    delivery = deliver(adapter.settings(), case, bundle, flow_run_id)
    adapter.logger().info(
        "bundle of %s delivered in %d part(s) to %s; contact notified; links valid until %s",
        case.tenant, len(delivery.parts), delivery.store_url, delivery.link_expires_at,
    )  # fmt: skip
    return delivery


@task(name="schedule-destruction", task_run_name="schedule-destruction-{case.tenant}")
def schedule_destruction(case: CaseRef, ack: AcknowledgementInput) -> DestructionSchedule | None:
    """Record the acknowledgement and schedule destruction (none while on legal hold)."""
    schedule = schedule_destruction_of(adapter.settings(), adapter.PrefectRuns(), case, ack)
    if schedule is None:
        adapter.logger().warning(
            "tenant %s is on legal hold: destruction is not scheduled until the hold is released",
            case.tenant,
        )
    return schedule


STEPS = ("freeze", "inventory", "export", "package", "verify", "deliver", "acknowledgement",
         "schedule")  # fmt: skip


@flow(name="offboard", flow_run_name="offboard-{tenant}", persist_result=True)
def offboard(tenant: str, reason_ref: OptionalStatementRef = "") -> dict[str, Any] | State:
    """Export a tenant's data, deliver it, wait for acknowledgement, schedule destruction.

    Args:
        tenant: The tenant's id, exactly as in the tenants registry (e.g. acme-corp).
        reason_ref: Why the contract ended, as a statement reference (st-…, from the staff
            page, /staff/, or `offboard statement TENANT termination --reason …`); never the
            text, which Prefect keeps.
    """
    case = stages.new_case(tenant, adapter.current_run_id())
    progress = adapter.Progress(STEPS).start(case, "offboard")
    try:
        freeze_tenant(case, reason_ref)
    except DuplicateCaseError as duplicate:  # a second event for the same tenant
        adapter.logger().warning("%s", duplicate)
        return adapter.cancelled(
            f"duplicate: tenant {tenant} already has case {duplicate.existing_case}"
        )
    progress.done("freeze")
    inventory = take_inventory(case)
    progress.done("inventory")
    # A global limit caps how many cases read the database at once (OFFBOARD_EXPORT_CONCURRENCY);
    # taken around the task, so the task runs (and shows as running) only once it has a slot.
    with adapter.exclusive(adapter.EXPORT_LIMIT_NAME):
        exported = export_snapshot(case, inventory)
    progress.done("export")
    bundle = package_bundle(case, inventory, exported)
    progress.done("package")
    verify_bundle(case, bundle, inventory)
    progress.done("verify")
    delivery = deliver_bundle(case, bundle, adapter.current_run_id())
    progress.done("deliver")
    adapter.publish_case_summary(case, {
        "tenant": tenant, "state": "waiting for the client's acknowledgement",
        "delivered at": delivery.delivered_at, "links valid until": delivery.link_expires_at,
        "bundle parts": len(delivery.parts), "rows": inventory.counts.get("rows", 0),
        "files": inventory.counts.get("files", 0), "tables": inventory.counts.get("tables", 0),
        "deemed delivered on": delivery.delivered_at
        + adapter.settings().delivery.acknowledgement_timeout,
    })  # fmt: skip
    ack = adapter.await_acknowledgement(case)
    progress.done("acknowledgement")
    received = downloads(adapter.settings(), case)
    if ack.deemed_delivered and not received:
        # Deemed delivered by the contract, but nothing says the client has the data: support
        # staff hear of it before the destruction is scheduled (the grace period is theirs).
        adapter.logger().warning(
            "case %s is deemed delivered but no part of its bundle was ever downloaded: "
            "contact the client before the scheduled destruction", case.case_id,
        )  # fmt: skip
    schedule = schedule_destruction(case, ack)
    progress.done("schedule")
    adapter.publish_case_summary(case, {
        "tenant": tenant,
        "state": "destruction scheduled" if schedule else "on legal hold: nothing scheduled",
        "acknowledgement": "deemed delivered" if ack.deemed_delivered else "acknowledged",
        "destruction scheduled for": schedule.scheduled_for if schedule else "-",
        "deadline": schedule.deadline if schedule else "-",
        "destruction run": schedule.flow_run_id if schedule else "-",
        "downloads": len(received),
        "first download": received[0].at if received else "never",
        **({"attention": "deemed delivered, but the bundle was never downloaded: contact the "
            "client before the destruction runs"} if ack.deemed_delivered and not received
           else {}),
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
