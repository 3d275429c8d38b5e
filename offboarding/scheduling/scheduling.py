"""The case's destruction in time: scheduling it at acknowledgement, legal holds, postponing.

    schedule_destruction   record the acknowledgement (or deemed delivery); one destruction run
                           per case (idempotency key), or none while the tenant is on hold
    place_hold             legal hold in the registry; the scheduled destruction is cancelled
    release_hold           lift the hold; destruction is scheduled again, for the original
                           deadline, or refused when the deadline has passed
    postpone_destruction   move a scheduled destruction later, never past the contract's limit

Every function takes the orchestrator's `Runs` (offboarding/runs.py) and the case's state from
its trail; none knows which orchestrator runs the flows. The destroy flow re-checks the hold
when it starts, so a hold placed while a run is already being started still stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import DeadlineError, LegalHoldError, TenantError
from offboarding.core.records import CaseRef, DestructionSchedule, case_from_id
from offboarding.delivery.delivery import status_of
from offboarding.delivery.receipts import downloads
from offboarding.evidence.timestamps import anchor_head
from offboarding.locations import lingering
from offboarding.people import StatementKind, keep_statement, pseudonym, statement
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
from offboarding.stores import open_store
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


def _said_by(settings: Settings, case: CaseRef, ref: str, kind: StatementKind) -> tuple[str, str]:
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


def _reschedule(
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
    by = _said_by(settings, case, said, "postponement")
    assert checked.schedule.flow_run_id is not None  # checked
    runs.cancel(checked.schedule.flow_run_id, "postponed")
    return _reschedule(runs, checked.trail, checked.schedule, checked.when, reason="moved", by=by)


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


def _lift_hold(settings: Settings, runs: Runs, tenant: str, said: str, *, now: bool) -> HoldResult:
    """Lift the hold (approved) and schedule each held case's destruction again."""
    lifted = statement(settings, said, tenant, "hold")
    plans = _release_plans(settings, runs, tenant, now=now)
    at = datetime.now(UTC)
    TenantRegistry(settings).set_hold(tenant, False)
    rescheduled = [
        _reschedule(
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
        result = _lift_hold(
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
    by = _said_by(settings, case, approval.requested_statement, "acknowledgement")
    runs.cancel(schedule.flow_run_id, "moved earlier (approved)")
    return _reschedule(runs, trail, schedule, when, reason="earlier", by=by)
