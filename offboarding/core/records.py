"""Typed records that cross stage boundaries (and Prefect's result storage).

They carry references, counts and digests only: never a row, a file's bytes or a person's
name or e-mail. Their JSON Schemas live in `schemas/` and a test keeps the two in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from offboarding.core.certificate import (
    ApprovalEvidence,
    Certificate,
    HoldEvent,
    LeftOut,
    LocationEvidence,
    ResidueDue,
    SystemStatus,
)
from offboarding.core.config import validate_tenant_id
from offboarding.core.errors import TenantError
from offboarding.core.model import Record
from offboarding.core.names import qualified

__all__ = [
    "ApprovalEvidence",
    "BundlePart",
    "BundleRef",
    "CaseRef",
    "Certificate",
    "ColumnSchema",
    "DeliveredPart",
    "Delivery",
    "DestructionSchedule",
    "ExportResult",
    "ExportedPart",
    "FileItem",
    "ForeignKeySchema",
    "HoldEvent",
    "Inventory",
    "LeftOut",
    "LocationEvidence",
    "LocationInventory",
    "Manifest",
    "ManifestEntry",
    "ResidueDue",
    "StagedRecord",
    "SystemEntry",
    "SystemStatus",
    "TableItem",
    "case_from_id",
]


class StagedRecord(Record):
    """A record too close to tenant data for the orchestrator (object keys are file names,
    and file names can name people): kept as JSON in the case's scratch space, and only this
    reference, its digest and its counts pass through Prefect."""

    path: str
    sha256: str
    counts: dict[str, int]


class CaseRef(Record):
    """Which case this is: everything else about it lives in its stores and audit trail."""

    tenant: str
    case_id: str


def case_from_id(case_id: str) -> CaseRef:
    """The case a case id names: `<tenant>-<12 hex digits of the offboard run>`."""
    tenant, _, suffix = case_id.rpartition("-")
    if len(suffix) != 12 or any(c not in "0123456789abcdef" for c in suffix):
        raise TenantError(
            f"{case_id!r} is not a case id: it looks like 'acme-0123456789ab' (the tenant, a "
            "dash, and 12 hex digits), as in the client's notice and the case's audit trail"
        )
    return CaseRef(tenant=validate_tenant_id(tenant), case_id=case_id)


class ColumnSchema(Record):
    name: str
    pg_type: str = Field(description="Type as PostgreSQL's format_type() prints it.")
    arrow_type: str = Field(description="Arrow type of the Parquet column.")
    nullable: bool
    as_text: bool = Field(
        default=False,
        description="True where Arrow has no exact type and the value is PostgreSQL's text form.",
    )


class ForeignKeySchema(Record):
    """A foreign key, so the client can rebuild the relations between tables."""

    columns: list[str]
    references: str = Field(description="schema.table referenced.")
    referenced_columns: list[str]
    declared: bool = Field(
        default=False,
        description="Declared in the operator's data map, not by the database: the platform "
        "keeps it by convention, and rows may break it.",
    )
    none: list[str | int] = Field(
        default_factory=list, description="Values besides NULL meaning 'no reference'."
    )
    when: dict[str, str | int] = Field(
        default_factory=dict,
        description="A polymorphic reference: it holds only where these columns have these values.",
    )


class TableItem(Record):
    """One table that holds some of the tenant's rows, and how they are selected."""

    schema_name: str
    table: str
    scope: Literal["tenant", "derived", "registry", "schema", "entity"]
    tenant_column: str | None = Field(
        default=None,
        description="For a tenant-scoped table: the column naming each row's tenant (its "
        "system's own), read back from the exported rows before packaging.",
    )
    rows: int
    bytes_estimate: int = Field(description="Share of the table's size for these rows (approx).")
    columns: list[ColumnSchema]
    primary_key: list[str]
    parents: list[str] = Field(
        default_factory=list, description="For derived tables: tables reached through FKs."
    )
    foreign_keys: list[ForeignKeySchema] = Field(default_factory=list)
    withheld: list[str] = Field(
        default_factory=list,
        description="In an answer about one person: columns given only on the person's own "
        "rows, NULL on other people's rows that merely point at the person (their words are "
        "theirs, GDPR Art. 15(4)); their keys and references are given.",
    )

    @property
    def qualified(self) -> str:
        return qualified(self.schema_name, self.table)


class FileItem(Record):
    key: str
    size: int
    sha256: str
    referenced: bool = Field(description="A tenant row references this object.")
    generation: int | None = Field(
        default=None, description="Object generation read (stores that keep generations)."
    )


class LocationInventory(Record):
    """What one data location holds of the tenant."""

    location: str
    items: int = Field(description="Rows, objects or entries of the tenant in this location.")
    bytes: int
    tables: list[TableItem] = Field(default_factory=list)
    files: list[FileItem] = Field(default_factory=list)
    global_tables: dict[str, str] = Field(default_factory=dict)
    excluded_tables: dict[str, str] = Field(default_factory=dict)
    shared_rows: dict[str, int] = Field(
        default_factory=dict,
        description="Tables whose rows reference this tenant's rows and another tenant's at once, "
        "with their number (handled per OFFBOARD_SHARED_ROWS).",
    )
    unclassified: list[str] = Field(
        default_factory=list, description="Tables nobody classified: the case cannot proceed."
    )
    left_out: list[LeftOut] = Field(
        default_factory=list,
        description="Its tables left out of the bundle (excluded, global), each with why.",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What makes the case cost more than the tenant's size (e.g. a tenant or "
        "foreign-key column without an index), with the fix. Names schema, never data.",
    )


class SystemEntry(Record):
    """One system of the data map, and how the tenant's data there is destroyed."""

    name: str
    description: str = ""
    handling: Literal["verified", "attested"] = Field(
        description="verified: a plug-in destroys and re-scans it; attested: a named role "
        "destroys it and confirms, with an evidence reference."
    )
    method: str = Field(description="The plug-in, or the role and its procedure.")


class Inventory(Record):
    """Every place the tenant's data lives, with counts and sizes, before anything is copied."""

    tenant: str
    case_id: str
    taken_at: datetime
    locations: list[LocationInventory]
    systems: list[SystemEntry] = Field(
        default_factory=list,
        description="Every system of the data map (the platform's, not the pipeline's own).",
    )

    @property
    def tables(self) -> list[TableItem]:
        return [t for loc in self.locations for t in loc.tables]

    @property
    def left_out(self) -> list[LeftOut]:
        """Every table and system whose data the bundle does not hold, with why: the
        locations' excluded and global tables, and the systems a role destroys (attested)."""
        tables = [t for loc in self.locations for t in loc.left_out]
        systems = [
            LeftOut(
                name=s.name,
                kind="attested system",
                system=s.name,
                why=f"{s.description or 'a system the pipeline cannot reach'}: not exported; "
                f"destroyed by {s.method}",
            )
            for s in self.systems
            if s.handling == "attested"
        ]
        return tables + systems

    @property
    def files(self) -> list[FileItem]:
        return [f for loc in self.locations for f in loc.files]

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def total_file_bytes(self) -> int:
        return sum(f.size for f in self.files)


class ExportedPart(Record):
    """A file in scratch space (or a store object) that becomes one bundle entry."""

    path: str = Field(description="Entry path inside the bundle.")
    source: str = Field(
        description="scratch:<relative path> (the worker's scratch), staged:<relative path> "
        "(the case's staging area in the delivery store) or store:<object key> (the files)."
    )
    kind: Literal["table", "file", "metadata"]
    table: str | None = None
    rows: int | None = None
    columns: list[ColumnSchema] | None = Field(
        default=None, description="For table parts: the columns as actually written."
    )
    size: int = Field(default=0, description="Bytes, to plan the bundle's parts.")
    sha256: str | None = Field(
        default=None, description="Digest of the bytes written, where the writer knows it."
    )


class ExportResult(Record):
    """Parts written to scratch (or named in a store), and the snapshot they come from."""

    parts: list[ExportedPart]
    snapshot_time: datetime


class ManifestEntry(Record):
    path: str
    size: int
    sha256: str
    kind: Literal["table", "file", "metadata", "readme"]
    table: str | None = None
    rows: int | None = None
    source_key: str | None = Field(default=None, description="Original object key of a file.")
    part: int | None = Field(
        default=None, description="Number of the ZIP part holding the entry; null: every part."
    )


class ManifestTable(Record):
    name: str
    scope: Literal["tenant", "derived", "registry", "schema", "entity"]
    rows: int
    columns: list[ColumnSchema]
    primary_key: list[str]
    foreign_keys: list[ForeignKeySchema] = Field(default_factory=list)
    parts: list[str]
    withheld: list[str] = Field(
        default_factory=list,
        description="In an answer about one person: columns NULL on other people's rows "
        "that merely point at the person (GDPR Art. 15(4)); see TableItem.withheld.",
    )


class Manifest(Record):
    """What the bundle holds; signed, and checked entry by entry by `offboard verify`."""

    format: Literal["tenant-offboarding-bundle/1"] = "tenant-offboarding-bundle/1"
    tenant: str
    case_id: str
    snapshot_time: datetime = Field(description="Time of the database snapshot exported.")
    tables: list[ManifestTable]
    file_count: int
    file_bytes: int
    entries: list[ManifestEntry]
    parts: list[str] = Field(description="File names of the bundle's ZIP parts, in order.")
    signing_key: str = Field(description="Fingerprint of the Ed25519 key that signed this file.")
    left_out: list[LeftOut] = Field(
        default_factory=list,
        description="Every table and system of the data map whose data this bundle does not "
        "hold, with the declared reason.",
    )


class BundlePart(Record):
    path: str
    size: int
    sha256: str
    plaintext_sha256: str | None = Field(
        default=None, description="For a part encrypted to the client: the ZIP's own digest."
    )
    plaintext_size: int | None = None


class BundleRef(Record):
    """A packaged bundle (one or more ZIP parts) with its digests: in the delivery store
    (`store_url`, each part's `path` a key there), or in scratch space (no `store_url`, each
    `path` a local file)."""

    parts: list[BundlePart]
    store_url: str = ""
    encrypted_to: str = Field(
        default="", description="The client's age recipient the parts are encrypted to."
    )
    table_rows: dict[str, int] = Field(
        default_factory=dict,
        description="Rows per table as the manifest says: what an encrypted bundle, which the "
        "operator cannot open, is reconciled with.",
    )
    manifest_sha256: str
    entries: int
    rows: int
    files: int


class DeliveredPart(Record):
    key: str
    sha256: str
    size: int
    plaintext_sha256: str | None = Field(
        default=None, description="Encrypted to the client: the decrypted ZIP's digest."
    )


class Delivery(Record):
    """Where the bundle was delivered; the links themselves go to the contact only."""

    store_url: str
    parts: list[DeliveredPart]
    link_expires_at: datetime
    delivered_at: datetime


class DestructionSchedule(Record):
    acknowledged_at: datetime
    scheduled_for: datetime
    deadline: datetime
    flow_run_id: str | None = Field(description="None while a legal hold keeps it unscheduled.")
