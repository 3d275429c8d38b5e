"""The trail's permission to destroy: the only source of a destruction's dates.

Destruction obeys the case's signed trail, not its caller (DESIGN.md, principle 9). Whoever
starts it (the scheduled run, a run made by hand in the UI or through the API, the CLI, a
script) gives a case id and nothing else; `require_warrant` reads the trail and the tenants
registry and refuses, before anything is touched, unless all of this holds:

    the trail         exists, every event signed by a key of the installation and chained,
                      every event naming this tenant and this case
    the case          frozen, inventoried, its bundle verified and delivered, acknowledged or
                      deemed delivered, a destruction planned (not held), no incident at its
                      export (one found by the destruction's checks is settled, then rerun)
    the registry      the tenant frozen by this very case (or destroyed by it: a rerun)
    before it starts  no legal hold (registry or trail), and the planned time has come

Once one location has been destroyed the destruction has started: a hold placed since cannot
bring the data back, so it no longer stops the remaining locations (the certificate shows the
hold), and the planned time is no longer checked. Every stage function of
`offboarding.destruction` asks for the warrant again, so no caller can skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from offboarding.core.config import Settings
from offboarding.core.errors import (
    IntegrityError,
    LegalHoldError,
    UnauthorisedDestructionError,
)
from offboarding.core.records import CaseRef, case_from_id
from offboarding.core.signing import load_key_list
from offboarding.registry import TenantRegistry
from offboarding.trail import AuditTrail, CaseState, events, verify_chain

__all__ = ["EARLY_START_TOLERANCE", "Warrant", "require_agreement", "require_warrant"]

# An orchestrator may start a scheduled run a little before its time (workers prefetch it).
EARLY_START_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class Warrant:
    """What the trail allows: this case's destruction, with the dates it fixed."""

    case: CaseRef
    acknowledged_at: datetime
    deadline: datetime
    scheduled_for: datetime
    deemed_delivered: bool
    started: bool  # a location was already destroyed: a rerun or a resumed run


def _refuse(
    case: CaseRef, why: str, fix: str, *, may_pass_later: bool = False
) -> UnauthorisedDestructionError:
    return UnauthorisedDestructionError(
        f"destruction of case {case.case_id} (tenant {case.tenant!r}) refused, nothing was "
        f"touched: {why}. {fix}",
        may_pass_later=may_pass_later,
    )


def _signed_trail(settings: Settings, case: CaseRef) -> AuditTrail:
    trail = AuditTrail.open(settings, case)
    stored = trail.events()
    if not stored:
        raise _refuse(
            case,
            "the archive holds no audit trail for this case",
            "Destruction runs only for a case the offboard flow opened; check the case id "
            "(the client's notice and `offboard deadlines` list them)",
        )
    try:
        verify_chain(stored, load_key_list(settings.keys_dir))
    except IntegrityError as broken:
        raise _refuse(
            case,
            f"its audit trail does not verify ({broken})",
            "Investigate the archive before anything is destroyed (`offboard audit verify`)",
        ) from None
    for event in stored:
        named = (event.document.get("tenant"), event.document.get("case_id"))
        if named != (case.tenant, case.case_id):
            raise _refuse(
                case,
                f"audit event {event.key} names another case",
                "Investigate the archive before anything is destroyed (`offboard audit verify`)",
            )
    return trail


def _require_case_ready(case: CaseRef, state: CaseState) -> None:
    steps = (
        (state.frozen, "frozen"),
        (state.inventory, "inventoried"),
        (state.bundle_verified, "its bundle verified"),
        (state.delivery, "delivered"),
        (state.acknowledgement, "acknowledged or deemed delivered"),
    )
    for reached, step in steps:
        if reached is None:
            raise _refuse(
                case,
                f"the trail does not show the case {step} (it is {state.phase})",
                "Destruction follows the acknowledgement of a delivered bundle; let the "
                "offboard flow reach it",
            )
    # An incident found by the destruction's own checks stopped it with every copy in place:
    # once its cause is settled, the destruction is run again (and checks again).
    exported = [i for i in state.incidents if i.stage != "destruction"]
    if exported:
        raise _refuse(
            case,
            f"{len(exported)} incident(s) at its {exported[0].stage} stopped this case",
            "Its export cannot be trusted: settle the incident, then offboard in a new case",
        )


def _require_no_hold(settings: Settings, trail: AuditTrail, state: CaseState) -> None:
    case = trail.case
    held = state.on_hold
    try:
        TenantRegistry(settings).require_no_hold(case.tenant)
    except LegalHoldError:
        held = True
    if held:
        trail.record(events.DestructionRefused(reason="legal hold"))
        raise LegalHoldError(
            f"tenant {case.tenant!r} is on legal hold: destruction of case {case.case_id} "
            "refused, nothing was touched. It is planned again when the hold is released "
            "(`offboard release`)"
        )


def require_warrant(settings: Settings, case: CaseRef, *, now: datetime | None = None) -> Warrant:
    """The case's permission to destroy, from its signed trail; raises, having touched
    nothing, when the trail does not allow it (the module's docstring lists the rules)."""
    now = now or datetime.now(UTC)
    if case_from_id(case.case_id) != case:
        raise _refuse(case, "the case id names another tenant", "Give the case id alone")
    trail = _signed_trail(settings, case)
    state = trail.state()
    _require_case_ready(case, state)
    assert state.acknowledged_at is not None  # checked just above
    record = TenantRegistry(settings).get(case.tenant)
    if record.status not in ("frozen", "destroyed") or record.offboarding_case != case.case_id:
        raise _refuse(
            case,
            f"the tenants registry shows the tenant {record.status}"
            + (f" by case {record.offboarding_case}" if record.offboarding_case else ""),
            "Only the case that froze the tenant may destroy it",
        )
    started = bool(state.destroyed) or state.certificate is not None
    if not started:
        _require_no_hold(settings, trail, state)
    schedule = state.schedule
    if schedule is None:
        raise _refuse(
            case,
            "no destruction was planned for it"
            + (" (acknowledged during a legal hold)" if state.destruction_held else ""),
            "Destruction is planned when the case is acknowledged, or when its hold is "
            "released (`offboard release`)",
            may_pass_later=True,  # a run started as it is created, its plan being recorded
        )
    if not started and now < schedule.scheduled_for - EARLY_START_TOLERANCE:
        raise _refuse(
            case,
            f"it is planned for {schedule.scheduled_for:%Y-%m-%d %H:%M} UTC, not before",
            "The scheduled run starts then; destroying earlier than planned needs a new "
            "acknowledgement with fewer days, approved by a second person",
            may_pass_later=True,  # an earlier plan approved now, being recorded
        )
    return Warrant(
        case=case,
        acknowledged_at=state.acknowledged_at,
        deadline=schedule.deadline,
        scheduled_for=schedule.scheduled_for,
        deemed_delivered=state.deemed_delivered,
        started=started,
    )


def require_agreement(
    warrant: Warrant,
    *,
    tenant: str | None = None,
    acknowledged_at: datetime | None = None,
    deadline: datetime | None = None,
) -> None:
    """Refuse a caller's word that disagrees with the trail (the parameters that runs
    scheduled by earlier releases still carry); the trail's dates are used either way."""
    trail = {
        "tenant": warrant.case.tenant,
        "acknowledged_at": warrant.acknowledged_at,
        "deadline": warrant.deadline,
    }
    given = {"tenant": tenant, "acknowledged_at": acknowledged_at, "deadline": deadline}
    wrong = sorted(name for name, value in given.items() if value not in (None, trail[name]))
    if wrong:
        raise _refuse(
            warrant.case,
            f"{', '.join(wrong)} given to the run disagree(s) with the case's signed trail",
            "Start destruction with the case id alone",
        )
