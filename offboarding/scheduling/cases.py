"""What every scheduling step reads and writes: a tenant's cases, a case's schedule, who made
a statement, and the one rule for a new destruction run of a scheduled case."""

from __future__ import annotations

from datetime import datetime

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.records import CaseRef, DestructionSchedule
from offboarding.people import StatementKind, pseudonym, statement
from offboarding.runs import Runs
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events

__all__ = ["cases_of", "current_schedule", "reschedule", "said_by"]


def said_by(settings: Settings, case: CaseRef, ref: str, kind: StatementKind) -> tuple[str, str]:
    """(pseudonym of who made the statement, its reference), for the case's trail."""
    said = statement(settings, ref, case.tenant, kind)
    return pseudonym(settings, case, said.field("name")), said.ref


def cases_of(settings: Settings, tenant: str) -> list[CaseRef]:
    """Every case of a tenant that has an audit trail, oldest first by id."""
    archive = open_store(settings.store_url("archive"))
    prefix = f"cases/{validate_tenant_id(tenant)}/"
    ids = sorted({o.key[len(prefix) :].split("/", 1)[0] for o in archive.list_objects(prefix)})
    return [CaseRef(tenant=tenant, case_id=case_id) for case_id in ids]


def current_schedule(settings: Settings, case: CaseRef) -> DestructionSchedule | None:
    """The latest destruction run scheduled for the case, from its trail."""
    return AuditTrail.open(settings, case).state().schedule


def reschedule(
    runs: Runs,
    trail: AuditTrail,
    schedule: DestructionSchedule,
    scheduled_for: datetime,
    *,
    reason: str,
    by: tuple[str, str],
    after_deadline: bool = False,
) -> DestructionSchedule:
    """A new destruction run for the same acknowledgement and deadline, recorded: the one rule
    for a release and a postponement. Each gets its own idempotency key."""
    case = trail.case
    number = trail.state().reschedules + 1
    run_id = runs.schedule_destruction(
        case,
        scheduled_for=scheduled_for,
        idempotency_key=f"destroy-{case.case_id}-{reason}-{number}",
    )
    trail.record(
        events.DestructionRescheduled(
            flow_run_id=run_id, scheduled_for=scheduled_for, deadline=schedule.deadline,
            acknowledged_at=schedule.acknowledged_at, by_pseudonym=by[0], statement=by[1],
            after_deadline=after_deadline, postponed=reason == "moved",
        )
    )  # fmt: skip
    return DestructionSchedule(
        acknowledged_at=schedule.acknowledged_at,
        scheduled_for=scheduled_for,
        deadline=schedule.deadline,
        flow_run_id=run_id,
    )
