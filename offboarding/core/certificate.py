"""The destruction certificate's model (NIST SP 800-88's sanitization record, one line per
location and per system), with its JSON Schema in `schemas/` like every record."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from offboarding.core.model import Record

__all__ = [
    "ApprovalEvidence",
    "Certificate",
    "HoldEvent",
    "LeftOut",
    "LocationEvidence",
    "ResidueDue",
    "SystemStatus",
]


class LocationEvidence(Record):
    """One location's line of the sanitization record: what it held of the tenant, how it was
    sanitized, how that was verified, and what (if anything) lingers until a known date."""

    location: str
    media: str = Field(description="Where: the kind of storage and its address (no tenant data).")
    method: Literal["clear", "purge", "delete"] = Field(
        description="NIST SP 800-88 method: clear = removed through the storage's own interface "
        "(nothing of it readable there); purge = cryptographic erase; delete = a logical "
        "deletion whose bytes stay in the files until rewritten (physical_residue), a clear "
        "only once the residue addendum reports the places purged."
    )
    technique: str
    items_before: int
    bytes_before: int = Field(
        description="The tenant's bytes there before: objects' and files' sizes; for a "
        "database, its rows times each table's average row as the database's statistics give "
        "it (rows are counted exactly in items_before)."
    )
    items_removed: int
    verification_method: str
    verification_result: Literal["pass", "fail"]
    remaining: int
    verification: str
    verified_at: datetime
    pending_until: datetime | None = Field(
        default=None,
        description="Copies that could not be removed at once (soft delete, scheduled key "
        "destruction) are gone by this time.",
    )
    isolation: str = Field(
        default="",
        description="How the removal was confined to the tenant, and what it checked as it "
        "went (keys listed and no outside reference, each deleted row's owner, each object key "
        "under the tenant's prefix).",
    )
    details: dict[str, str] = Field(default_factory=dict)


class SystemStatus(Record):
    """One system of the platform's data map after destruction: verified by a re-scan,
    attested by its role, or lingering (copies the re-scan knows of, gone by `until`)."""

    name: str
    description: str = ""
    status: Literal["verified", "attested", "lingering"]
    method: str = Field(description="How it was destroyed and checked, or the role's procedure.")
    until: datetime | None = Field(
        default=None, description="Lingering: when the last copy is gone."
    )
    role: str | None = Field(default=None, description="Attested: the role that confirmed.")
    attested_by: str | None = Field(
        default=None,
        description="Attested: who confirmed, as the case's pseudonym (hmac-sha256:…), never "
        "the name.",
    )
    attested_at: datetime | None = None
    action: str | None = Field(default=None, description="Attested: what was done.")
    evidence: str | None = Field(default=None, description="Attested: where the proof is.")


class HoldEvent(Record):
    kind: str
    at: datetime


class ApprovalEvidence(Record):
    """An action that shortened or lifted a protection, and the two people behind it."""

    request: str
    action: str = Field(
        description="early-destruction, lift-hold, lift-hold-now or postpone-to-limit."
    )
    requested_by: str | None = Field(description="Who asked: a pseudonym of the case.")
    requested_at: datetime
    approved_by: str | None = Field(
        default=None,
        description="The second person: a pseudonym of the case; None: not "
        "approved (the action was not carried out).",
    )
    approved_at: datetime | None = None


class LeftOut(Record):
    """A table or a system whose data the bundle does not hold, with the data map's reason: the
    bundle's README, its manifest, the inventory and the certificate each list every one."""

    name: str = Field(description="The table (schema.table) or the system.")
    kind: Literal[
        "excluded table",
        "global table",
        "shared entity",
        "tenant object",
        "attested system",
        "unbound system",
    ]
    system: str = Field(description="The data map's system it belongs to.")
    why: str = Field(description="The reason the data map declares.")
    tenant_rows: int | None = Field(
        default=None, description="The tenant's rows there, where they could be counted."
    )
    handled_by: str | None = Field(
        default=None,
        description="The data map's system whose export and destruction cover the tenant's "
        "copy there (a plug-in, or an attested step).",
    )

    def describe(self) -> str:
        rows = f", {self.tenant_rows} row(s) of the tenant" if self.tenant_rows else ""
        handled = f"; its copy is handled by system {self.handled_by}" if self.handled_by else ""
        return f"{self.kind} {self.name} ({self.system}{rows}): {self.why}{handled}"


class ResidueDue(Record):
    """Where the tenant's deleted bytes stay on disk after the logical deletion, and what
    ends it: the compact flow's addendum then reports the canary scan."""

    system: str
    place: str
    until: datetime | None = Field(description="By when it ends; None when not datable.")
    ends: str = Field(description="What ends it.")


class Certificate(Record):
    """Certificate of destruction: the fields of a NIST SP 800-88 Rev. 2 sanitization record
    (what, where, method, tool and version, verification method and result, who, when),
    extended with the case, the inventory before, per-location evidence after (with how each
    removal was confined to the tenant), the contract's dates and legal holds. The digests of
    every other tenant's data before and after are there only in the optional audit mode."""

    format: Literal["tenant-offboarding-certificate/2"] = "tenant-offboarding-certificate/2"
    sanitization_standard: str = "NIST SP 800-88 Rev. 2 (sanitization record fields)"
    tenant: str
    case_id: str
    subject: str = Field(description="What was sanitized.")
    performed_by: str = Field(description="Who: the organisation and the automated run.")
    validated_by: str = Field(description="Who verified: the independent re-scan and its key.")
    tool: str
    tool_version: str
    terminated_at: datetime | None = Field(
        default=None, description="When the case froze the tenant, on the contract's end."
    )
    delivered_at: datetime | None = Field(
        default=None, description="When the bundle was delivered."
    )
    acknowledgement: Literal["acknowledged", "deemed-delivered"]
    acknowledged_at: datetime
    deadline: datetime
    started_at: datetime
    completed_at: datetime
    all_copies_gone_by: datetime = Field(
        description="The later of completion and every location's pending_until."
    )
    deadline_met: bool
    physical_residue: list[ResidueDue] = Field(
        default_factory=list,
        description="Logically deleted at completed_at, the rows' bytes stay in these places "
        "until the dates given; the compact flow's signed addendum "
        "(certificates/<tenant>/<case>.residue.json) reports the canary scan once they went.",
    )
    physically_purged_by: datetime | None = Field(
        default=None,
        description="When the next compaction has rewritten the tables' pages (the latest "
        "dated physical_residue); planning keeps it within the deadline.",
    )
    inventory_rows: int
    inventory_files: int
    inventory_bytes: int
    inventory_digest: str = Field(description="sha256 of the inventory event in the audit chain.")
    manifest_sha256: str | None = Field(description="Manifest of the bundle the client received.")
    bundle_downloads: int = Field(
        default=0,
        description="Downloads of the bundle's parts through the link endpoint, each with a "
        "signed receipt in the archive (downloads/<tenant>/<case>/).",
    )
    bundle_first_downloaded_at: datetime | None = None
    bundle_fully_downloaded: bool = Field(
        default=False, description="Every part was downloaded whole at least once."
    )
    data_backed_up: bool
    backup_locations: list[str]
    locations: list[LocationEvidence]
    systems: list[SystemStatus] = Field(
        default_factory=list,
        description="Every system of the platform's data map: verified, attested (never "
        "counted as verified), or lingering until a date.",
    )
    left_out: list[LeftOut] = Field(
        default_factory=list,
        description="Every table and system of the data map the case did not export and "
        "destroy itself, with the declared reason (and, for a table holding the tenant's rows, "
        "the system that covers its copy).",
    )
    legal_holds: list[HoldEvent]
    legal_hold_seen: bool
    approvals: list[ApprovalEvidence] = Field(
        default_factory=list,
        description="Four eyes: every request to shorten or lift a protection of the case, "
        "who asked and who approved (pseudonyms).",
    )
    shared_rows: dict[str, str] = Field(
        default_factory=dict,
        description="Tables whose rows referenced this tenant's and another tenant's rows at "
        "once: how many, and what the operator's settings did with them (leave, delete, export).",
    )
    neighbours_digest_before: str | None = Field(
        default=None,
        description="Audit mode only (OFFBOARD_NEIGHBOURS_AUDIT): digest of every other "
        "tenant's data before destruction.",
    )
    neighbours_digest_after: str | None = Field(
        default=None, description="Audit mode only: the same digest after destruction."
    )
    neighbours_unchanged: bool | None = Field(
        default=None,
        description="Audit mode only: the two digests are equal (None when not audited).",
    )
    neighbours_excluded: list[str] = Field(
        default_factory=list,
        description="Audit mode only: tenants left out of the digests (open cases of their own).",
    )
    audit_chain_head: str = Field(description="sha256 of the last audit event before this one.")
    signing_key: str
