"""The case's destruction in time: scheduling it at acknowledgement, legal holds, postponing.

    schedule_destruction   record the acknowledgement (or deemed delivery); one destruction run
                           per case (idempotency key), or none while the tenant is on hold
    place_hold             legal hold in the registry; the scheduled destruction is cancelled
    release_hold           lift the hold; destruction is scheduled again, for the original
                           deadline, or refused when the deadline has passed (holds.py)
    postpone_destruction   move a scheduled destruction later, never past the contract's limit

Every function takes the orchestrator's `Runs` (offboarding/runs.py) and the case's state from
its trail; none knows which orchestrator runs the flows. The destroy flow re-checks the hold
when it starts, so a hold placed while a run is already being started still stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from offboarding.core.config import Settings
from offboarding.core.errors import DeadlineError, LegalHoldError, TenantError
from offboarding.core.records import CaseRef, DestructionSchedule, case_from_id
from offboarding.delivery.delivery import status_of
from offboarding.delivery.receipts import downloads
from offboarding.evidence.timestamps import anchor_head
from offboarding.locations import lingering
from offboarding.people import Statement, keep_statement, pseudonym, statement
from offboarding.planning import destruction_schedule, latest_destruction_start, require_possible
from offboarding.registry import TenantRegistry
from offboarding.runs import CANCELLABLE, AcknowledgementInput, Runs
from offboarding.scheduling.approvals import (
    FOUR_EYES_WINDOW,
    Approval,
    claim_approval,
    get_approval,
    record_given,
    request_approval,
    require_second_person,
    unclaim_approval,
)
from offboarding.scheduling.cases import cases_of, current_schedule, reschedule, said_by
from offboarding.scheduling.holds import HoldResult, lift_hold, place_hold, release_hold
from offboarding.trail import AuditTrail, events

__all__ = [
    "ApprovalOutcome",
    "HoldResult",
    "approve",
    "case_from_id",
    "cases_of",
    "current_schedule",
    "place_hold",
    "postpone_destruction",
    "release_hold",
    "schedule_destruction",
]


def _record_acknowledgement(
    settings: Settings,
    trail: AuditTrail,
    case: CaseRef,
    ack: AcknowledgementInput,
    said: Statement,
) -> None:
    """The acknowledgement in the case's trail (once, whatever the retries), or the deemed
    delivery that stands for it."""
    if ack.deemed_delivered:
        state = trail.state()
        timeout = settings.delivery.acknowledgement_timeout
        trail.record(
            events.DeemedDelivered(
                at=datetime.now(UTC), delivered_at=status_of(state).delivered_at,
                notices_sent=len(state.links),
                acknowledgement_timeout_days=timeout / timedelta(days=1),
                downloads=len(downloads(settings, case)),
            ),
            once="acknowledged",
        )  # fmt: skip
    else:
        # The archive may be retention-locked: a person goes in only as the case's pseudonym,
        # which proves who acknowledged while the case's key exists (three years after the end).
        trail.record(
            events.Acknowledged(
                by_pseudonym=pseudonym(settings, case, said.field("name")),
                statement=said.ref, at=datetime.now(UTC),
                days_until_destruction=ack.days_until_destruction,
                note_given=bool(said.field("note")),
            ),
            once="acknowledged",
        )  # fmt: skip


def schedule_destruction(
    settings: Settings, runs: Runs, case: CaseRef, ack: AcknowledgementInput
) -> DestructionSchedule | None:
    """Record the acknowledgement (or deemed delivery) and schedule destruction: one run per
    case whatever the retries and resumes. A tenant on legal hold gets no run until released."""
    trail = AuditTrail.open(settings, case)
    # Refused before anything is recorded: the operator fixes the setting, then the case
    # acknowledges again.
    lead_time, lead_reason = lingering(settings)
    require_possible(lead_time, lead_reason)
    ref = ack.statement or keep_statement(  # the name typed in release 0.1's form
        settings, case.tenant, "acknowledgement", name=ack.acknowledged_by, note=ack.note
    )
    said = statement(settings, ref, case.tenant, "acknowledgement")
    _record_acknowledgement(settings, trail, case, ack, said)
    acknowledged_at = trail.state().acknowledged_at
    assert acknowledged_at is not None  # recorded just above
    # The 90 days count from here: the chain's head, timestamped outside the operator.
    head = trail.events()[-1]
    anchor_head(settings, trail.store, case, (int(head.document["seq"]), head.body))
    standard = settings.destruction.grace
    asked = None if ack.deemed_delivered else ack.days_until_destruction
    # Fewer days than the standard grace shorten the client's protection: the grace holds
    # until a second person approves (approvals.py).
    early = asked is not None and timedelta(days=asked) < standard
    grace = standard if early or asked is None else timedelta(days=asked)
    plan = destruction_schedule(
        acknowledged_at, grace, lead_time=lead_time, lead_reason=lead_reason
    )
    if early and not any(
        r.action == "early-destruction" for r, _ in trail.state().approvals_requested.values()
    ):
        request_approval(
            settings, case.tenant, [case], "early-destruction", said.ref, "acknowledgement",
            case=case, days=asked,
        )  # fmt: skip
    if TenantRegistry(settings).get(case.tenant).legal_hold:
        trail.record(
            events.DestructionHeld(
                scheduled_for=plan.scheduled_for, deadline=plan.deadline,
                acknowledged_at=acknowledged_at,
            ),
            once="destruction-held",
        )  # fmt: skip
        return None
    run_id = runs.schedule_destruction(
        case, scheduled_for=plan.scheduled_for, idempotency_key=f"destroy-{case.case_id}"
    )
    trail.record(
        events.DestructionScheduled(
            flow_run_id=run_id, scheduled_for=plan.scheduled_for, deadline=plan.deadline,
            acknowledged_at=acknowledged_at,
        ),
        once="destruction-scheduled",
    )  # fmt: skip
    return DestructionSchedule(
        acknowledged_at=acknowledged_at,
        scheduled_for=plan.scheduled_for,
        deadline=plan.deadline,
        flow_run_id=run_id,
    )


def postpone_destruction(
    settings: Settings, runs: Runs, case: CaseRef, destroy_on: datetime, said: str
) -> DestructionSchedule | Approval:
    """Move the case's scheduled destruction to a later time, within the 90-day limit; `said`
    is the postponement statement of who asked for it. Into the last FOUR_EYES_WINDOW before
    the latest possible start, it waits for a second person: the approval request is
    returned, the schedule unchanged."""
    checked = _checked_postponement(settings, runs, case, destroy_on)
    if checked.when > checked.latest - FOUR_EYES_WINDOW:
        return request_approval(
            settings, case.tenant, [case], "postpone-to-limit", said, "postponement",
            case=case, destroy_on=checked.when,
        )  # fmt: skip
    return _move_later(settings, runs, checked, said)


@dataclass(frozen=True)
class _Postponement:
    """A postponement checked against the trail and the orchestrator, with what was read."""

    when: datetime
    latest: datetime
    trail: AuditTrail
    schedule: DestructionSchedule


def _checked_postponement(
    settings: Settings, runs: Runs, case: CaseRef, destroy_on: datetime
) -> _Postponement:
    trail = AuditTrail.open(settings, case)
    schedule = trail.state().schedule
    if schedule is None or schedule.flow_run_id is None:
        raise TenantError(f"case {case.case_id} has no scheduled destruction to postpone")
    when = destroy_on if destroy_on.tzinfo else destroy_on.replace(tzinfo=UTC)
    latest = latest_destruction_start(schedule.deadline, lingering(settings)[0])
    if when > latest:
        raise DeadlineError(
            f"case {case.case_id}: destruction must start by {latest:%Y-%m-%d %H:%M} UTC to "
            f"finish before its deadline {schedule.deadline:%Y-%m-%d %H:%M} UTC (clause 2.3.2); "
            "choose an earlier time"
        )
    if when < datetime.now(UTC):
        raise DeadlineError(f"{when:%Y-%m-%d %H:%M} UTC is in the past: choose a later time")
    if runs.state(schedule.flow_run_id) not in CANCELLABLE:
        raise TenantError(
            f"case {case.case_id}: its destruction run is no longer waiting (running or done), "
            "so it cannot be postponed"
        )
    return _Postponement(when, latest, trail, schedule)


def _move_later(
    settings: Settings, runs: Runs, checked: _Postponement, said: str
) -> DestructionSchedule:
    """Carry out a checked postponement: the waiting run cancelled, a new one scheduled."""
    case = checked.trail.case
    by = said_by(settings, case, said, "postponement")
    assert checked.schedule.flow_run_id is not None  # checked
    runs.cancel(checked.schedule.flow_run_id, "postponed")
    return reschedule(runs, checked.trail, checked.schedule, checked.when, reason="moved", by=by)


@dataclass(frozen=True)
class ApprovalOutcome:
    approval: Approval
    rescheduled: list[DestructionSchedule]


def approve(settings: Settings, runs: Runs, ref: str, said: str) -> ApprovalOutcome:
    """A second person approves a request (`said`: their approval statement) and it is
    carried out: the destruction moved earlier, the hold lifted, or the postponement made.
    The person who asked cannot approve it; both are recorded in the case's trail."""
    approval = get_approval(settings, ref)
    name = require_second_person(settings, approval, said)
    claim_approval(settings, approval, said)
    try:
        rescheduled = _carry_out(settings, runs, approval)
    except Exception:
        unclaim_approval(settings, approval)
        raise
    cases = [approval.case] if approval.case else cases_of(settings, approval.tenant)
    record_given(settings, approval, said, name, cases)
    return ApprovalOutcome(approval, rescheduled)


def _carry_out(settings: Settings, runs: Runs, approval: Approval) -> list[DestructionSchedule]:
    if approval.action in ("lift-hold", "lift-hold-now"):
        result = lift_hold(
            settings, runs, approval.tenant, approval.requested_statement,
            now=approval.action == "lift-hold-now",
        )  # fmt: skip
        return result.rescheduled
    case = approval.case
    assert case is not None  # the other actions are a case's
    if approval.action == "postpone-to-limit":
        when = datetime.fromisoformat(approval.params["destroy_on"])
        checked = _checked_postponement(settings, runs, case, when)  # again: time has passed
        return [_move_later(settings, runs, checked, approval.requested_statement)]
    return [_destroy_earlier(settings, runs, case, approval)]


def _destroy_earlier(
    settings: Settings, runs: Runs, case: CaseRef, approval: Approval
) -> DestructionSchedule:
    """The acknowledgement's own days, approved: the scheduled run moves earlier (never
    before now, never past the contract's limit)."""
    if TenantRegistry(settings).get(case.tenant).legal_hold:
        raise LegalHoldError(
            f"tenant {case.tenant!r} is on legal hold: approve the earlier destruction once the "
            "hold is lifted"
        )
    trail = AuditTrail.open(settings, case)
    schedule = trail.state().schedule
    if schedule is None or schedule.flow_run_id is None:
        raise TenantError(f"case {case.case_id} has no scheduled destruction to move")
    if runs.state(schedule.flow_run_id) not in CANCELLABLE:
        raise TenantError(
            f"case {case.case_id}: its destruction run is no longer waiting (running or done)"
        )
    lead_time, lead_reason = lingering(settings)
    days = timedelta(days=int(approval.params["days_until_destruction"]))
    plan = destruction_schedule(
        schedule.acknowledged_at, days, lead_time=lead_time, lead_reason=lead_reason
    )
    when = max(plan.scheduled_for, datetime.now(UTC))
    by = said_by(settings, case, approval.requested_statement, "acknowledgement")
    runs.cancel(schedule.flow_run_id, "moved earlier (approved)")
    return reschedule(runs, trail, schedule, when, reason="earlier", by=by)
