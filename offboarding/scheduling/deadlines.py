"""Every case against its contractual deadline (clause 2.3.2: destroyed within 90 days of
restitution), read from the audit archive: what `deadline-watch` checks daily."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, CaseState

__all__ = ["CaseDeadline", "case_deadlines", "deadline_of"]

Status = Literal[
    "waiting", "scheduled", "held", "due-soon", "overdue", "destroyed", "destroyed-late"
]


@dataclass(frozen=True)
class CaseDeadline:
    tenant: str
    case_id: str
    status: Status
    deadline: datetime | None
    scheduled_for: datetime | None
    destroyed_at: datetime | None
    note: str

    @property
    def flagged(self) -> bool:
        return self.status in ("due-soon", "overdue", "destroyed-late")


def _cases(settings: Settings) -> list[CaseRef]:
    archive = open_store(settings.store_url("archive"))
    ids = {
        tuple(o.key.split("/")[1:3])
        for o in archive.list_objects("cases/")
        if o.key.count("/") >= 3
    }
    return [CaseRef(tenant=t, case_id=c) for t, c in sorted(ids)]


def case_deadlines(settings: Settings, now: datetime) -> list[CaseDeadline]:
    signer = Signer.load_or_create(settings.keys_dir)
    return [
        deadline_of(settings, AuditTrail(settings, case, signer).state(), now)
        for case in _cases(settings)
    ]


def deadline_of(settings: Settings, state: CaseState, now: datetime) -> CaseDeadline:
    """Where one case stands against its deadline (pure: from its state and the time)."""
    tenant, case_id = state.case.tenant, state.case.case_id
    plan = state.latest_plan
    scheduled = plan.scheduled_for if plan else None
    gone_by, deadline = state.all_copies_gone_by, state.deadline
    if gone_by is not None and deadline is not None:  # certified
        late = gone_by > deadline
        return CaseDeadline(
            tenant, case_id, "destroyed-late" if late else "destroyed", deadline, scheduled,
            gone_by, "all copies gone after the deadline" if late else "",
        )  # fmt: skip
    if deadline is None:
        latest = state.latest_possible_deadline(settings.delivery.acknowledgement_timeout)
        return CaseDeadline(
            tenant, case_id, "waiting", None, None, None,
            f"awaiting acknowledgement; deadline at the latest {latest:%Y-%m-%d}"
            if latest else "not delivered yet",
        )  # fmt: skip
    held = state.destruction_held or state.on_hold
    if now > deadline:
        status: Status = "overdue"
        note = f"past the deadline by {(now - deadline).days} day(s) and not destroyed"
    elif deadline - now <= settings.destruction.deadline_warning:
        status, note = "due-soon", f"{(deadline - now) / timedelta(days=1):.1f} day(s) left"
    else:
        status, note = ("held", "on legal hold") if held else ("scheduled", "")
    if held and status != "held":
        note += "; on legal hold"
    awaiting = {
        name: requested.due
        for name, requested in state.attestations_requested.items()
        if name not in state.attestations
    }
    for name, due in sorted(awaiting.items(), key=lambda item: item[1]):
        past = now > due
        note += f"{'; ' if note else ''}awaiting attestation of {name} by {due:%Y-%m-%d}"
        note += " (overdue)" if past else ""
        if past and status == "scheduled":
            status = "due-soon"  # flagged: the certificate waits for a person
    return CaseDeadline(tenant, case_id, status, deadline, scheduled, None, note)
