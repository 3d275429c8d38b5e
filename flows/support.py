"""Support staff's actions, each a deployment with a form in the Prefect UI.

    reissue-link           send the client's contact new download links
    legal-hold             place or lift a legal hold (cancels / reschedules destruction)
    postpone-destruction   move a scheduled destruction later, never past the contract's limit
    verify-destruction     re-scan every location of a destroyed case, on the record

Starting a case by hand is the `offboard` deployment's own form; acknowledging for the client is
the Resume form of the waiting `offboard` run.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from prefect import flow, get_run_logger

from offboarding.audit import AuditTrail
from offboarding.config import Settings
from offboarding.delivery import send_links
from offboarding.errors import DeadlineError, DestructionIncompleteError, TenantError
from offboarding.locations import DESTRUCTION_ORDER, get_location
from offboarding.orchestration import publish_table
from offboarding.planning import DESTRUCTION_MARGIN
from offboarding.scheduling import (
    cancel_if_scheduled,
    case_from_id,
    current_schedule,
    place_hold,
    release_hold,
    schedule_destruction_run,
)
from offboarding.signing import Signer


@flow(name="reissue-link", flow_run_name="reissue-link-{case_id}")
def reissue_link(case_id: str) -> str:
    """Send the client's contact new download links for a case.

    Args:
        case_id: The case, e.g. acme-0123456789ab (in the case summary and the client's e-mail).
    """
    issued = send_links(Settings(), case_from_id(case_id), "reissue")
    get_run_logger().info("new links sent for %s, valid until %s", case_id, issued.expires_at)
    return issued.expires_at.isoformat()


@flow(name="legal-hold", flow_run_name="legal-hold-{action}-{tenant}")
def legal_hold(
    tenant: str, action: Literal["place", "lift"], reason: str = "", requested_by: str = ""
) -> list[str]:
    """Place a legal hold (scheduled destruction is cancelled) or lift it (destruction is
    scheduled again for its original date, within its deadline).

    Args:
        tenant: The tenant's id, exactly as in the tenants registry.
        action: place, or lift.
        reason: Required to place: the order or request (recorded as a digest only).
        requested_by: Who asked for it (recorded as a digest only).
    """
    settings = Settings()
    by = requested_by or "support staff"
    if action == "place":
        result = place_hold(settings, tenant, reason, by)
        for note in result.notes:
            get_run_logger().warning("%s", note)
        return result.cancelled_runs
    released = release_hold(settings, tenant, by)
    return [str(s.flow_run_id) for s in released.rescheduled]


@flow(name="postpone-destruction", flow_run_name="postpone-destruction-{case_id}")
def postpone_destruction(case_id: str, destroy_on: datetime, requested_by: str = "") -> str:
    """Move the case's scheduled destruction to a later time, within the 90-day limit.

    Args:
        case_id: The case, e.g. acme-0123456789ab.
        destroy_on: The new time (UTC); at most the deadline minus any lingering delay and a
            2-day margin.
        requested_by: Who asked for it (recorded as a digest only).
    """
    settings = Settings()
    case = case_from_id(case_id)
    schedule = current_schedule(settings, case)
    if schedule is None or schedule.flow_run_id is None:
        raise TenantError(f"case {case_id} has no scheduled destruction to postpone")
    when = destroy_on if destroy_on.tzinfo else destroy_on.replace(tzinfo=UTC)
    latest = (
        schedule.deadline
        - max(settings.key_destroy_delay, settings.soft_delete_retention)
        - DESTRUCTION_MARGIN
    )
    if when > latest:
        raise DeadlineError(
            f"case {case_id}: destruction must start by {latest:%Y-%m-%d %H:%M} UTC to finish "
            f"before its deadline {schedule.deadline:%Y-%m-%d %H:%M} UTC (clause 2.3.2); choose "
            "an earlier time"
        )
    if when < datetime.now(UTC):
        raise DeadlineError(f"{when:%Y-%m-%d %H:%M} UTC is in the past: choose a later time")
    if not cancel_if_scheduled(schedule.flow_run_id, "postponed"):
        raise TenantError(
            f"case {case_id}: its destruction run is no longer waiting (running or done), so "
            "it cannot be postponed"
        )
    trail = AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))
    moves = len(trail.find("destruction-rescheduled"))
    run_id = schedule_destruction_run(
        case, acknowledged_at=schedule.acknowledged_at, scheduled_for=when,
        deadline=schedule.deadline, idempotency_key=f"destroy-{case_id}-moved-{moves + 1}",
    )  # fmt: skip
    trail.record(
        "destruction-rescheduled",
        {"flow_run_id": run_id, "scheduled_for": when.isoformat(),
         "deadline": schedule.deadline.isoformat(),
         "acknowledged_at": schedule.acknowledged_at.isoformat(), "postponed": True,
         "by_sha256": hashlib.sha256((requested_by or "support staff").encode()).hexdigest()},
    )  # fmt: skip
    return run_id


@flow(name="verify-destruction", flow_run_name="verify-destruction-{case_id}")
def verify_destruction(case_id: str) -> dict[str, int]:
    """Re-scan every location of a case for anything of its tenant, and record the result.

    Args:
        case_id: The case, e.g. acme-0123456789ab.
    """
    settings = Settings()
    case = case_from_id(case_id)
    results = {name: get_location(name, settings).verify(case) for name in DESTRUCTION_ORDER}
    publish_table(
        case, "reverification",
        [{"location": n, "left": r.items, "verification": r.verification}
         for n, r in results.items()],
        f"Re-verification of case {case_id}",
    )  # fmt: skip
    AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir)).record(
        "reverified", {name: r.items for name, r in results.items()}
    )
    left = {name: r.items for name, r in results.items() if r.items}
    if left:
        raise DestructionIncompleteError(f"case {case_id}: data of the tenant found in {left}")
    return {name: r.items for name, r in results.items()}
