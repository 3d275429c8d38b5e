"""Legal holds: placed in the registry, the tenant's scheduled destruction cancelled; lifted,
destruction scheduled again for the original deadline, or refused when it has passed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from offboarding.core.config import Settings
from offboarding.core.errors import DeadlineError, TenantError
from offboarding.core.records import DestructionSchedule
from offboarding.people import pseudonym, statement
from offboarding.registry import TenantRegistry
from offboarding.runs import CANCELLABLE, Runs
from offboarding.scheduling.approvals import (
    Approval,
    request_approval,
)
from offboarding.scheduling.cases import cases_of, reschedule
from offboarding.trail import AuditTrail, events

__all__ = ["HoldResult", "lift_hold", "place_hold", "release_hold"]


@dataclass(frozen=True)
class HoldResult:
    tenant: str
    cancelled_runs: list[str]
    rescheduled: list[DestructionSchedule]
    notes: list[str]


def place_hold(settings: Settings, runs: Runs, tenant: str, said: str) -> HoldResult:
    """Put the tenant on legal hold and cancel every destruction not yet started; `said` is the
    hold statement: who asked for it, and why."""
    hold = statement(settings, said, tenant, "hold")
    reason = hold.field("reason")
    if not reason:
        raise TenantError(
            "a legal hold needs a reason (e.g. the court order's reference): record the hold "
            "statement with its reason"
        )
    registry = TenantRegistry(settings)
    registry.set_hold(tenant, True, reason)
    cancelled: list[str] = []
    notes: list[str] = []
    for case in cases_of(settings, tenant):
        trail = AuditTrail.open(settings, case)
        schedule = trail.state().schedule
        run_id = schedule.flow_run_id if schedule else None
        state = runs.state(run_id) if run_id else None
        cancelled_here: list[str] = []
        if run_id and state in CANCELLABLE:
            runs.cancel(run_id, "legal hold")
            cancelled_here.append(run_id)
        elif state == "RUNNING":
            notes.append(
                f"case {case.case_id}: destruction is already running; it re-checks the hold "
                "only when it starts, so check its outcome in the Prefect UI"
            )
        cancelled += cancelled_here
        # The reason and the person may name people: the locked archive keeps pseudonyms.
        trail.record(
            events.LegalHoldPlaced(
                reason_pseudonym=pseudonym(settings, case, reason),
                by_pseudonym=pseudonym(settings, case, hold.field("name")),
                statement=hold.ref,
                destruction_runs_cancelled=cancelled_here,
            )
        )
    return HoldResult(tenant, cancelled, [], notes)


def release_hold(
    settings: Settings, runs: Runs, tenant: str, said: str, *, now: bool = False
) -> Approval:
    """Ask for the hold to be lifted (`said`: the hold statement of who asks): it stays until a
    second person approves (`approve`), which lifts it and schedules each held case's
    destruction again, within its deadline. A deadline that passed while the hold was on is
    refused now, unless `now` (destroy at once; the certificate shows the deadline missed)."""
    _release_plans(settings, runs, tenant, now=now)  # refused now rather than at approval
    return request_approval(
        settings, tenant, cases_of(settings, tenant), "lift-hold-now" if now else "lift-hold",
        said, "hold",
    )  # fmt: skip


def _release_plans(
    settings: Settings, runs: Runs, tenant: str, *, now: bool
) -> list[tuple[AuditTrail, DestructionSchedule]]:
    """Each held case's destruction to schedule again once the hold is lifted."""
    record = TenantRegistry(settings).get(tenant)
    if not record.legal_hold:
        raise TenantError(f"tenant {tenant!r} is not on legal hold: nothing to release")
    at = datetime.now(UTC)
    plans: list[tuple[AuditTrail, DestructionSchedule]] = []
    for case in cases_of(settings, tenant):
        trail = AuditTrail.open(settings, case)
        state = trail.state()
        schedule = state.schedule
        if schedule is None:
            schedule = state.held_plan  # acknowledged while held: never scheduled
        elif runs.state(str(schedule.flow_run_id)) not in {"CANCELLED", "FAILED"}:
            continue  # still scheduled, running, or done
        if schedule is None:
            continue  # still waiting for its acknowledgement
        if schedule.deadline <= at and not now:
            raise DeadlineError(
                f"case {case.case_id}: its destruction deadline {schedule.deadline:%Y-%m-%d %H:%M} "
                "UTC (acknowledgement + 90 days, clause 2.3.2) passed while the hold was on. The "
                "hold stays. If the hold's authority allows destruction now, run `offboard release "
                f"{tenant} --now`: it destroys at once and the certificate records the late date; "
                "tell the client's DPO"
            )
        plans.append((trail, schedule))
    return plans


def lift_hold(settings: Settings, runs: Runs, tenant: str, said: str, *, now: bool) -> HoldResult:
    """Lift the hold (approved) and schedule each held case's destruction again."""
    lifted = statement(settings, said, tenant, "hold")
    plans = _release_plans(settings, runs, tenant, now=now)
    at = datetime.now(UTC)
    TenantRegistry(settings).set_hold(tenant, False)
    rescheduled = [
        reschedule(
            runs,
            trail,
            schedule,
            at if now else max(schedule.scheduled_for, at),
            reason="release",
            by=(pseudonym(settings, trail.case, lifted.field("name")), lifted.ref),
            after_deadline=now and schedule.deadline <= at,
        )
        for trail, schedule in plans
    ]
    for case in cases_of(settings, tenant):
        AuditTrail.open(settings, case).record(
            events.LegalHoldLifted(by_pseudonym=pseudonym(settings, case, lifted.field("name")))
        )
    return HoldResult(tenant, [], rescheduled, [])
