"""One typed model per kind of audit event: what each step of a case records, and nothing else.

The trail stores each event as signed JSON: an envelope (`seq`, `kind`, `once`, `at`, `tenant`,
`case_id`, `prev`, `signing_key`) around `data`, which is one of the models below. Every model
carries references, counts, dates and digests only; never a row, a file name, a person's name
or an address (the archive may be retention-locked: what goes in stays).

An event of a kind this version does not know fails loudly (`IntegrityError`): a state
computed while ignoring part of the record would be a guess."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_serializer,
    model_validator,
)

from offboarding.core.errors import IntegrityError
from offboarding.core.records import DeliveredPart, LeftOut

__all__ = [
    "EVENT_TYPES",
    "Acknowledged",
    "ApprovalAction",
    "ApprovalGiven",
    "ApprovalRequested",
    "AttestationReminded",
    "AttestationRequested",
    "BundleVerified",
    "CanariesKept",
    "CertificateRecorded",
    "Certified",
    "DeemedDelivered",
    "Delivered",
    "DestructionHeld",
    "DestructionRefused",
    "DestructionRescheduled",
    "DestructionScheduled",
    "EventData",
    "Frozen",
    "IncidentRecorded",
    "InventoryRecorded",
    "LegalHoldLifted",
    "LegalHoldPlaced",
    "LinksIssued",
    "LocationCount",
    "LocationDestroyed",
    "Packaged",
    "PackagedPart",
    "RecordedEvent",
    "ResidueCompacted",
    "ResiduePlace",
    "Reverified",
    "SystemAttested",
    "parse_event_data",
]

# Times are written as Python's isoformat (`+00:00`), as the trail always has been.
Instant = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), when_used="json")]


# A person in the archive: an HMAC of their name under the case's own key (offboarding/people.py),
# which goes with the contact details after three years. Records written before pseudonyms hold
# a plain sha256 instead (`*_sha256`), kept readable.
Pseudonym = Annotated[
    str | None,
    Field(description="hmac-sha256:<hex> of a name under the case's key."),
]
LegacyDigest = Annotated[
    str | None, Field(description="Earlier records: the plain sha256 of a name.")
]
StatementRef = Annotated[
    str | None,
    Field(description="The statement behind it, kept outside the archive."),
]


class EventData(BaseModel):
    """The `data` of one kind of event; `kind` is the name the trail files it under."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str]


class Frozen(EventData):
    kind: ClassVar[str] = "frozen"
    frozen_at: Instant
    region: str
    reason_statement: StatementRef = None  # the termination's reason, kept outside the archive


class LocationCount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    items: int
    bytes: int


class InventoryRecorded(EventData):
    """Counts per location and rows per table; written flat (`{<location>: {items, bytes},
    "tables": {...}}`), the shape auditors' tools already read."""

    kind: ClassVar[str] = "inventory"
    locations: dict[str, LocationCount]
    tables: dict[str, int]
    # What the bundle does not hold, with why (a system's name never holds '_', so the key
    # cannot be a location's); written only when there is something.
    left_out: list[LeftOut] = []

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, value: Any) -> Any:
        if isinstance(value, dict) and "locations" not in value:
            tables = value.get("tables", {})
            return {
                "tables": tables,
                "left_out": value.get("left_out", []),
                "locations": {k: v for k, v in value.items() if k not in ("tables", "left_out")},
            }
        return value

    @model_serializer(mode="plain")
    def _to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {
            name: {"items": count.items, "bytes": count.bytes}
            for name, count in self.locations.items()
        }
        if self.left_out:
            flat["left_out"] = [entry.model_dump(mode="json") for entry in self.left_out]
        return flat | {"tables": dict(self.tables)}

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    @property
    def total_bytes(self) -> int:
        return sum(count.bytes for count in self.locations.values())


class PackagedPart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sha256: str
    size: int


class Packaged(EventData):
    kind: ClassVar[str] = "packaged"
    parts: list[PackagedPart]
    manifest_sha256: str
    entries: int
    rows: int
    files: int
    snapshot_time: Instant


class BundleVerified(EventData):
    kind: ClassVar[str] = "bundle-verified"
    entries: int
    rows: int
    key: str = Field(description="Fingerprint of the key the manifest's signature checks with.")
    parts: int


class Delivered(EventData):
    kind: ClassVar[str] = "delivered"
    store_url: str
    region: str
    flow_run_id: str
    parts: list[DeliveredPart]


class LinksIssued(EventData):
    kind: ClassVar[str] = "links-issued"
    purpose: Literal["delivery", "reminder", "reissue"]
    expires_at: Instant
    link_sha256: list[str]
    recipient_domain: str
    message_id: str
    via: str


class Acknowledged(EventData):
    kind: ClassVar[str] = "acknowledged"
    by_pseudonym: Pseudonym = None
    by_sha256: LegacyDigest = None
    statement: StatementRef = None
    at: Instant
    days_until_destruction: int | None
    note_given: bool


class DeemedDelivered(EventData):
    kind: ClassVar[str] = "deemed-delivered"
    at: Instant
    delivered_at: Instant
    notices_sent: int
    acknowledgement_timeout_days: float
    downloads: int | None = Field(
        default=None,
        description="Downloads of the bundle on record by then (receipts); 0: the client may "
        "never have received it. None: recorded before receipts existed.",
    )


class DestructionHeld(EventData):
    """Acknowledged while on legal hold: the destruction it would have had, not scheduled."""

    kind: ClassVar[str] = "destruction-held"
    scheduled_for: Instant
    deadline: Instant
    acknowledged_at: Instant


class DestructionScheduled(EventData):
    kind: ClassVar[str] = "destruction-scheduled"
    flow_run_id: str
    scheduled_for: Instant
    deadline: Instant
    acknowledged_at: Instant


class DestructionRescheduled(EventData):
    """A new destruction run: after a hold was lifted, or postponed by staff."""

    kind: ClassVar[str] = "destruction-rescheduled"
    flow_run_id: str
    scheduled_for: Instant
    deadline: Instant
    acknowledged_at: Instant
    by_pseudonym: Pseudonym = None
    by_sha256: LegacyDigest = None
    statement: StatementRef = None
    after_deadline: bool = False
    postponed: bool = False


class LegalHoldPlaced(EventData):
    kind: ClassVar[str] = "legal-hold-placed"
    reason_pseudonym: Pseudonym = None
    by_pseudonym: Pseudonym = None
    reason_sha256: LegacyDigest = None
    by_sha256: LegacyDigest = None
    statement: StatementRef = None
    destruction_runs_cancelled: list[str]


class LegalHoldLifted(EventData):
    kind: ClassVar[str] = "legal-hold-lifted"
    by_pseudonym: Pseudonym = None
    by_sha256: LegacyDigest = None


ApprovalAction = Literal["early-destruction", "lift-hold", "lift-hold-now", "postpone-to-limit"]


class ApprovalRequested(EventData):
    """Someone asked for an action that shortens or lifts a protection of the tenant's data:
    it waits for a second person (offboarding/scheduling/approvals.py)."""

    kind: ClassVar[str] = "approval-requested"
    request: str  # ap-…, the approval's reference in the ledger
    action: ApprovalAction
    by_pseudonym: Pseudonym = None
    statement: StatementRef = None
    days_until_destruction: int | None = None  # early destruction: what was asked
    destroy_on: Instant | None = None  # postponement to the limit: when


class ApprovalGiven(EventData):
    """A second person approved the request, and it was carried out."""

    kind: ClassVar[str] = "approval-given"
    request: str
    action: ApprovalAction
    by_pseudonym: Pseudonym = None
    statement: StatementRef = None


class DestructionRefused(EventData):
    kind: ClassVar[str] = "destruction-refused"
    reason: str


class LocationDestroyed(EventData):
    kind: ClassVar[str] = "location-destroyed"
    location: str
    items_before: int
    bytes_before: int
    items_removed: int


class AttestationRequested(EventData):
    """An attested system of the data map awaits its role's confirmation, due by `due`."""

    kind: ClassVar[str] = "attestation-requested"
    system: str
    role: str
    due: Instant


class AttestationReminded(EventData):
    kind: ClassVar[str] = "attestation-reminded"
    system: str
    recipient_domain: str
    overdue: bool
    at: Instant


class SystemAttested(EventData):
    """The role confirmed it destroyed the tenant's data in the system: what it did and where
    the proof is. The certificate lists the system as attested, never as verified."""

    kind: ClassVar[str] = "system-attested"
    system: str
    role: str
    by_pseudonym: Pseudonym = None
    by_sha256: LegacyDigest = None
    statement: StatementRef = None
    action: str
    evidence: str
    at: Instant
    due: Instant


class CertificateRecorded(EventData):
    """The certificate document itself, recorded once in the chain before it is archived."""

    kind: ClassVar[str] = "certificate"
    certificate: dict[str, Any]


class Certified(EventData):
    kind: ClassVar[str] = "certified"
    certificate: str = Field(description="Archive key of the certificate.")
    certificate_sha256: str
    report: str
    report_sha256: str
    contact_details_erase_by: Instant


class Reverified(EventData):
    """A later re-scan of every location: items of the tenant found, per location."""

    kind: ClassVar[str] = "reverified"
    remaining: dict[str, int]

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, value: Any) -> Any:
        if isinstance(value, dict) and "remaining" not in value:
            return {"remaining": value}
        return value

    @model_serializer(mode="plain")
    def _to_flat(self) -> dict[str, int]:
        return dict(self.remaining)


class CanariesKept(EventData):
    """Canaries sampled at inventory, sealed apart (never here): offboarding/export/canaries."""

    kind: ClassVar[str] = "canaries-kept"
    systems: dict[str, int]  # canaries per system
    sealed_with: str  # id of the key that seals them (destroyed with them)


class ResiduePlace(BaseModel):
    """One kind of physical place of one system, scanned for the tenant's canaries."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    system: str
    place: str
    files: int
    bytes: int
    canaries: int
    found: int  # canaries found in these files (a live row's own excepted)
    status: Literal["purged", "lingering", "unverified"]
    until: str = ""  # for lingering residue: what ends it
    method: str = ""  # how the place was cleared and read


class ResidueCompacted(EventData):
    """A compaction run closed the case: offboarding/destruction/compaction.py."""

    kind: ClassVar[str] = "residue-compacted"
    run: str
    compacted_at: Instant
    tables: dict[str, int] = Field(description="Tables rewritten per system.")
    places: list[ResiduePlace]
    addendum: str = Field(description="Archive key of the signed addendum.")
    addendum_sha256: str
    canaries_destroyed: bool


class IncidentRecorded(EventData):
    kind: ClassVar[str] = "incident"
    record: str = Field(description="Archive key of the signed incident record.")
    notify_clients_by: Instant
    stage: str
    affected_tenants: list[str]


EVENT_TYPES: dict[str, type[EventData]] = {
    model.kind: model
    for model in (
        Frozen, InventoryRecorded, Packaged, BundleVerified, Delivered, LinksIssued,
        Acknowledged, DeemedDelivered, DestructionHeld, DestructionScheduled,
        DestructionRescheduled, LegalHoldPlaced, LegalHoldLifted, DestructionRefused,
        LocationDestroyed, CertificateRecorded, Certified, Reverified, IncidentRecorded,
        AttestationRequested, AttestationReminded, SystemAttested, ApprovalRequested,
        ApprovalGiven, CanariesKept, ResidueCompacted,
    )
}  # fmt: skip


def parse_event_data(kind: str, data: Any, *, where: str = "") -> EventData:
    """The typed `data` of an event of `kind`; an unknown kind or a malformed body is an error."""
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise IntegrityError(
            f"audit event {where or kind!r}: unknown kind {kind!r}; this version knows "
            f"{', '.join(sorted(EVENT_TYPES))}. Read the archive with the tool version that "
            "wrote it, or add the kind to offboarding/trail/events.py"
        )
    try:
        return model.model_validate(data)
    except ValueError as error:
        raise IntegrityError(
            f"audit event {where or kind!r}: malformed {kind!r} data: {error}"
        ) from None


class RecordedEvent(BaseModel):
    """One event as read from the trail: its envelope, its typed data and its digest."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    key: str
    seq: int
    kind: str
    once: str | None
    at: datetime
    sha256: str
    data: EventData
