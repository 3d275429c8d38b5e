"""A case's state: one typed object computed from its audit trail, in one pass.

Every reader (the flows, the case watch, support staff's commands, the deadline watch, the
certificate) asks this object; nobody re-derives the state from event names. The phases, in
the order a case goes through them (docs/architecture.md draws them):

    opened -> frozen -> inventoried -> packaged -> bundle-verified -> delivered
      -> acknowledged | deemed-delivered -> scheduled | held -> destroying -> certified

A legal hold can be placed at any point before destruction starts; an incident stops the case
where it was detected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from offboarding.core.config import CONTRACT_DESTRUCTION_LIMIT
from offboarding.core.records import CaseRef, DestructionSchedule
from offboarding.trail.events import (
    Acknowledged,
    ApprovalGiven,
    ApprovalRequested,
    AttestationReminded,
    AttestationRequested,
    BundleVerified,
    CertificateRecorded,
    Certified,
    DeemedDelivered,
    Delivered,
    DestructionHeld,
    DestructionRefused,
    DestructionRescheduled,
    DestructionScheduled,
    Frozen,
    IncidentRecorded,
    InventoryRecorded,
    LegalHoldLifted,
    LegalHoldPlaced,
    LinksIssued,
    LocationDestroyed,
    Packaged,
    RecordedEvent,
    Reverified,
    SystemAttested,
)

__all__ = ["GENESIS", "CaseState", "HoldRecord", "IssuedLinks", "Phase"]

GENESIS = "0" * 64

Phase = Literal[
    "opened",
    "frozen",
    "inventoried",
    "packaged",
    "bundle-verified",
    "delivered",
    "acknowledged",
    "deemed-delivered",
    "held",
    "scheduled",
    "destroying",
    "certified",
]


@dataclass(frozen=True)
class IssuedLinks:
    once: str | None
    at: datetime
    links: LinksIssued


@dataclass(frozen=True)
class HoldRecord:
    """A legal-hold fact of the case: placed, lifted, a destruction refused or held."""

    kind: str
    at: datetime


_HOLD_KINDS = (LegalHoldPlaced, LegalHoldLifted, DestructionRefused, DestructionHeld)
_Plan = DestructionScheduled | DestructionRescheduled | DestructionHeld


@dataclass(frozen=True)
class CaseState:
    case: CaseRef
    head: str = GENESIS
    events: int = 0
    frozen: Frozen | None = None
    inventory: InventoryRecorded | None = None
    inventory_digest: str | None = None
    packaged: Packaged | None = None
    bundle_verified: BundleVerified | None = None
    delivery: Delivered | None = None
    delivered_at: datetime | None = None
    links: tuple[IssuedLinks, ...] = ()
    acknowledgement: Acknowledged | DeemedDelivered | None = None
    plans: tuple[_Plan, ...] = ()
    holds: tuple[HoldRecord, ...] = ()
    on_hold: bool = False
    destroyed: dict[str, LocationDestroyed] = field(default_factory=dict)
    attestations_requested: dict[str, AttestationRequested] = field(default_factory=dict)
    attestations_requested_at: dict[str, datetime] = field(default_factory=dict)
    attestations: dict[str, SystemAttested] = field(default_factory=dict)
    attestation_reminders: dict[str, tuple[datetime, ...]] = field(default_factory=dict)
    certificate: dict[str, Any] | None = None
    certified: Certified | None = None
    reverified: Reverified | None = None
    incidents: tuple[IncidentRecorded, ...] = ()
    approvals_requested: dict[str, tuple[ApprovalRequested, datetime]] = field(default_factory=dict)
    approvals_given: dict[str, tuple[ApprovalGiven, datetime]] = field(default_factory=dict)

    @classmethod
    def of(cls, case: CaseRef, events: Sequence[RecordedEvent]) -> CaseState:
        """Fold the trail's events, oldest first, into the case's state."""
        values: dict[str, Any] = {
            "case": case, "events": len(events), "destroyed": {}, "attestations_requested": {},
            "attestations": {}, "attestation_reminders": {}, "attestations_requested_at": {},
            "approvals_requested": {}, "approvals_given": {},
        }  # fmt: skip
        links: list[IssuedLinks] = []
        plans: list[_Plan] = []
        holds: list[HoldRecord] = []
        incidents: list[IncidentRecorded] = []
        on_hold = False
        for event in events:
            data = event.data
            values["head"] = event.sha256
            if isinstance(data, _HOLD_KINDS):
                holds.append(HoldRecord(event.kind, event.at))
            match data:
                case Frozen():
                    values["frozen"] = data
                case InventoryRecorded():
                    values["inventory"], values["inventory_digest"] = data, event.sha256
                case Packaged():
                    values["packaged"] = data
                case BundleVerified():
                    values["bundle_verified"] = data
                case Delivered():
                    values["delivery"], values["delivered_at"] = data, event.at
                case LinksIssued():
                    links.append(IssuedLinks(event.once, event.at, data))
                case Acknowledged() | DeemedDelivered():
                    values["acknowledgement"] = data
                case DestructionScheduled() | DestructionRescheduled() | DestructionHeld():
                    plans.append(data)
                case LegalHoldPlaced():
                    on_hold = True
                case LegalHoldLifted():
                    on_hold = False
                case LocationDestroyed():
                    values["destroyed"][data.location] = data
                case AttestationRequested():
                    values["attestations_requested"].setdefault(data.system, data)
                    values["attestations_requested_at"].setdefault(data.system, event.at)
                case SystemAttested():
                    values["attestations"].setdefault(data.system, data)
                case AttestationReminded():
                    sent = values["attestation_reminders"].get(data.system, ())
                    values["attestation_reminders"][data.system] = (*sent, data.at)
                case CertificateRecorded():
                    values.setdefault("certificate", data.certificate)
                case Certified():
                    values.setdefault("certified", data)
                case Reverified():
                    values["reverified"] = data
                case IncidentRecorded():
                    incidents.append(data)
                case ApprovalRequested():
                    values["approvals_requested"].setdefault(data.request, (data, event.at))
                case ApprovalGiven():
                    values["approvals_given"].setdefault(data.request, (data, event.at))
        return cls(
            **values,
            links=tuple(links),
            plans=tuple(plans),
            holds=tuple(holds),
            on_hold=on_hold,
            incidents=tuple(incidents),
        )

    # What the case is waiting for, or has done last.
    @property
    def phase(self) -> Phase:
        if self.certificate is not None:
            return "certified"
        if self.destroyed:
            return "destroying"
        if self.plans:
            return "held" if self.destruction_held else "scheduled"
        if self.acknowledgement is not None:
            return self.acknowledgement.kind  # type: ignore[return-value]
        for phase, reached in (
            ("delivered", self.delivery),
            ("bundle-verified", self.bundle_verified),
            ("packaged", self.packaged),
            ("inventoried", self.inventory),
            ("frozen", self.frozen),
        ):
            if reached is not None:
                return phase  # type: ignore[return-value]
        return "opened"

    @property
    def destruction_held(self) -> bool:
        """Acknowledged while on legal hold, and not scheduled since."""
        return bool(self.plans) and isinstance(self.plans[-1], DestructionHeld)

    @property
    def deemed_delivered(self) -> bool:
        return isinstance(self.acknowledgement, DeemedDelivered)

    @property
    def acknowledged_at(self) -> datetime | None:
        return self.acknowledgement.at if self.acknowledgement else None

    @property
    def links_expire_at(self) -> datetime | None:
        """Expiry of the links sent last (a reminder re-sends the same expiry)."""
        return self.links[-1].links.expires_at if self.links else None

    @property
    def notices(self) -> list[str]:
        """Once-keys of every notice sent, so a notice is never sent twice."""
        return [issued.once for issued in self.links if issued.once]

    def notice(self, once: str) -> LinksIssued | None:
        return next((i.links for i in self.links if i.once == once), None)

    @property
    def schedule(self) -> DestructionSchedule | None:
        """The latest destruction run created for the case (None before one exists)."""
        runs = [p for p in self.plans if not isinstance(p, DestructionHeld)]
        return _schedule(runs[-1]) if runs else None

    @property
    def held_plan(self) -> DestructionSchedule | None:
        """The destruction a hold kept from being scheduled at acknowledgement, if any."""
        held = [p for p in self.plans if isinstance(p, DestructionHeld)]
        return _schedule(held[-1]) if held else None

    @property
    def latest_plan(self) -> DestructionSchedule | None:
        return _schedule(self.plans[-1]) if self.plans else None

    @property
    def reschedules(self) -> int:
        return sum(isinstance(p, DestructionRescheduled) for p in self.plans)

    @property
    def deadline(self) -> datetime | None:
        """Acknowledgement + 90 days: what the certificate was checked against once certified,
        the latest plan's deadline before."""
        if self.certificate is not None:
            return datetime.fromisoformat(self.certificate["deadline"])
        plan = self.latest_plan
        return plan.deadline if plan else None

    def latest_possible_deadline(self, acknowledgement_timeout: timedelta) -> datetime | None:
        """For a case not acknowledged yet: the deadline if it ends up deemed delivered."""
        if self.delivered_at is None:
            return None
        return self.delivered_at + acknowledgement_timeout + CONTRACT_DESTRUCTION_LIMIT

    @property
    def all_copies_gone_by(self) -> datetime | None:
        if self.certificate is None:
            return None
        return datetime.fromisoformat(self.certificate["all_copies_gone_by"])


def _schedule(plan: _Plan) -> DestructionSchedule:
    return DestructionSchedule(
        acknowledged_at=plan.acknowledged_at,
        scheduled_for=plan.scheduled_for,
        deadline=plan.deadline,
        flow_run_id=None if isinstance(plan, DestructionHeld) else plan.flow_run_id,
    )
