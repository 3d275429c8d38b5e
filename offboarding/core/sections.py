"""The sections of the pipeline's settings, each read from its `OFFBOARD_<SECTION>_*`
environment variables (offboarding/core/config.py assembles them into `Settings`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CONTRACT_DESTRUCTION_LIMIT",
    "FLAT_NAMES",
    "MAX_LINK_LIFETIME",
    "DeliverySettings",
    "DestructionSettings",
    "EvidenceSettings",
    "ExportSettings",
    "KeyringSettings",
    "PlatformSettings",
    "StoreSettings",
]

# Clause 2.3.2: copies are destroyed within 90 days of restitution.
CONTRACT_DESTRUCTION_LIMIT = timedelta(days=90)
# The longest a download link may stay valid (docs/security.md; Cloud Storage's V4 limit too).
MAX_LINK_LIFETIME = timedelta(days=7)


def _section_config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=env_prefix, extra="ignore", frozen=True, populate_by_name=True
    )


class _Section(BaseSettings):
    """One concern's settings, read from its own OFFBOARD_* variables (the names of 0.1)."""


class PlatformSettings(_Section):
    """The platform's database, and how tenant data is laid out in it."""

    model_config = _section_config("OFFBOARD_")

    database_url: str = Field(
        default="",
        description="libpq connection string of the platform's PostgreSQL database.",
    )
    ledger_url: str = Field(
        default="",
        description="libpq connection string of the database holding the pipeline's own ledger "
        "(schema offboarding: cases, statements, keys, requests); default the platform's "
        "database. A database of its own keeps the pipeline's tables out of the platform's.",
    )
    tenant_column: str = Field(
        default="tenant_id", description="Column that names the owning tenant in shared tables."
    )
    tenant_schema_pattern: str = Field(
        default="tenant_{tenant}",
        description="Name of a schema that belongs wholly to one tenant (schema-per-tenant).",
    )
    registry_table: str = Field(
        default="public.tenants",
        description="schema.table of the tenants registry (id, name, region, status, legal_hold, "
        "legal_hold_reason, contact_email, frozen_at, offboarding_case, destroyed_at, "
        "contact_delete_after).",
    )
    global_tables: dict[str, str] = Field(
        default={"public.plans": "plan catalogue shared by all tenants; holds no tenant data"},
        description="Tables holding no tenant data, each with the reason it is global.",
    )
    excluded_tables: dict[str, str] = Field(
        default={},
        description="Tables deliberately left out of export and destruction, each with a reason.",
    )
    file_reference_columns: list[str] = Field(
        default=["public.documents.object_key"],
        description="schema.table.column values that are keys of objects in the files store.",
    )
    shared_rows: dict[str, Literal["leave", "delete", "export"]] = Field(
        default={},
        description="Per table, what happens to rows that reference both the tenant's rows and "
        "another tenant's (a case stops while a table holds such rows and is not listed): "
        "'leave' them (neither exported nor deleted), 'delete' them with the tenant (not "
        "exported), or 'export' them without destroying them.",
    )


class StoreSettings(_Section):
    """The object stores: tenants' files, delivered bundles, the audit archive, backups."""

    model_config = _section_config("OFFBOARD_")

    files_url: str = Field(
        default="",
        description="Store of the tenants' uploaded files (file:///path or gs://bucket/prefix).",
    )
    delivery_url: str = Field(
        default="",
        description="Store the bundles are delivered from (file:// or gs://), for every region "
        "when `delivery_regions` is empty.",
    )
    delivery_regions: dict[str, str] = Field(
        default={},
        description='Delivery store per tenant region, e.g. {"eu": "gs://acme-exports-eu"}. '
        "When set, a tenant whose region is missing stops at delivery.",
    )
    archive_url: str = Field(
        default="", description="Write-once store of audit records and certificates."
    )
    backup_urls: list[str] = Field(
        default=[],
        description="Backup locations (at least two: clause 2.3.8 asks for several). Empty: two "
        "local stores under home.",
    )
    gcs_signing_key_file: Path | None = Field(
        default=None,
        description="Service-account key (JSON) that signs Cloud Storage links; unset: sign "
        "through IAM signBlob with the ambient credentials (workload identity).",
    )
    gcs_signing_email: str = Field(
        default="", description="Service account that signs links under workload identity."
    )
    soft_delete_retention: timedelta = Field(
        default=timedelta(0),
        description="How long deleted objects stay recoverable in the object stores (Cloud "
        "Storage soft delete: 7 days by default). Planned for like the key delay.",
    )


class KeyringSettings(_Section):
    """Where tenants' data keys live, and how long destroying one takes."""

    model_config = _section_config("OFFBOARD_KEYRING_")

    url: str = Field(
        validation_alias="OFFBOARD_KEYRING_URL",
        default="local",
        description="Where tenants' data keys live: 'local' (a key-encryption key in the keys "
        "directory). Cloud KMS: see docs/backups.md.",
    )
    destroy_delay: timedelta = Field(
        validation_alias="OFFBOARD_KEY_DESTROY_DELAY",
        default=timedelta(0),
        description="Time between destroying a data key and the destruction taking effect "
        "(Cloud KMS: 30 days by default). Destruction is planned to finish within the deadline.",
    )


class DeliverySettings(_Section):
    """Links, notices and the wait for the client's acknowledgement."""

    model_config = _section_config("OFFBOARD_")

    link_base_url: str = Field(
        default="http://127.0.0.1:8765",
        description="Public base URL of the download endpoint that serves local links.",
    )
    link_lifetime: timedelta = Field(
        default=timedelta(days=7),
        description="How long a download link stays valid: at most 7 days.",
    )
    reminders_before_expiry: list[timedelta] = Field(
        default=[timedelta(days=3), timedelta(days=1)],
        description="When to remind the contact, counted back from the link's expiry.",
    )
    acknowledgement_timeout: timedelta = Field(
        default=timedelta(days=30),
        description="Without an acknowledgement this long after delivery, the case continues "
        "as 'deemed delivered' and the 90-day clock starts.",
    )
    case_watch_interval: timedelta = Field(
        default=timedelta(hours=1),
        description="How often the case watch looks after waiting cases (reminders, expiry).",
    )
    smtp_url: str = Field(
        default="",
        description="Mail server: smtp://[user:password@]host[:port] (STARTTLS required), "
        "smtps://... for implicit TLS. Empty: messages are written to <home>/outbox/ instead.",
    )
    smtp_plaintext_hosts: list[str] = Field(
        default_factory=list,
        description="Mail servers (host names, as in OFFBOARD_SMTP_URL) reached over smtp:// "
        "without STARTTLS, e.g. a relay on the same machine. Any other smtp:// server that "
        "offers no STARTTLS is refused: notices carry download links.",
    )
    mail_from: str = Field(
        default="offboarding@localhost", description="Sender address of notices to clients."
    )
    staff_auth: str = Field(
        default="",
        description="user:password that support staff's page of the link endpoint (/staff/: "
        "statements, approvals) requires, e.g. the Prefect server's PREFECT_SERVER_API_AUTH_"
        "STRING. Empty: the staff page is off (the client's pages are not affected).",
    )
    staff_user_header: str = Field(
        default="",
        description="Behind an SSO proxy (oauth2-proxy, IAP): the request header carrying the "
        "signed-in person's identity (e.g. X-Forwarded-Email). The staff page then takes who "
        "acts from it, not from the form, and refuses requests without it.",
    )
    reply_to: str = Field(
        default="", description="Where the client's replies go (support staff's mailbox)."
    )

    @field_validator("link_lifetime", "acknowledgement_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @field_validator("link_lifetime")
    @classmethod
    def _at_most_a_week(cls, value: timedelta) -> timedelta:
        # The threat model's promise (docs/security.md), and Cloud Storage's own V4 limit.
        if value > MAX_LINK_LIFETIME:
            raise ValueError(
                f"must be at most {MAX_LINK_LIFETIME.days} days (a leaked link must not stay "
                "valid longer); the case watch re-issues expired links"
            )
        return value


class ExportSettings(_Section):
    """How the export reads the database and packages the bundle."""

    model_config = _section_config("OFFBOARD_EXPORT_")

    workers: int = Field(
        default=2, ge=1, le=64, description="Tables exported in parallel, in one snapshot."
    )
    split_rows: int = Field(
        default=1_000_000,
        ge=1_000,
        description="Tables with more rows are exported as several parts, by key range.",
    )
    split_bytes: int = Field(
        default=512 * 1024**2,
        ge=1024**2,
        description="Tables whose rows of the tenant weigh more are exported as several parts "
        "too, however few the rows (wide rows: documents, blobs).",
    )
    cluster: str = Field(
        default="",
        description="Address of a Dask scheduler (tcp://host:8786) whose workers write the "
        "export's parts, each importing the one snapshot, and put them in the case's staging "
        "area in the delivery store. Empty: the flow's own process writes every part, with "
        "`workers` threads, into its scratch space.",
    )
    replica_url: str = Field(
        default="",
        description="libpq connection string of a hot-standby replica of the platform "
        "database to read the export from (the freeze and the inventory stay on the primary; "
        "the export waits until the replica has replayed past the primary's position). Empty: "
        "read from the primary.",
    )
    replica_wait: timedelta = Field(
        default=timedelta(minutes=15),
        description="How long the export waits for the replica to catch up before it stops "
        "(and is retried) saying how far behind the replica is.",
    )
    concurrency: int = Field(
        default=2,
        ge=1,
        description="Cases exporting at once against the database (a Prefect global "
        "concurrency limit, set by `offboard setup-prefect` and the served default).",
    )
    parquet_row_group_rows: int = Field(
        validation_alias="OFFBOARD_PARQUET_ROW_GROUP_ROWS",
        default=32_768,
        ge=1_000,
        description="Rows per Parquet row group (bounds worker memory).",
    )
    bundle_part_bytes: int = Field(
        validation_alias="OFFBOARD_BUNDLE_PART_BYTES",
        default=4 * 1024**3,
        ge=1024,
        description="Bundles larger than this are split into numbered ZIP parts.",
    )
    bundle_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="ZIP parts written at once by the flow's process (each a writer of bounded "
        "memory: a few chunks in flight and, on Cloud Storage, one upload chunk). With "
        "`cluster`, the cluster's workers write the parts instead.",
    )


class DestructionSettings(_Section):
    """When and how destruction runs."""

    model_config = _section_config("OFFBOARD_DESTRUCTION_")

    grace: timedelta = Field(
        default=timedelta(days=30),
        description="Time between acknowledgement and the scheduled destruction, at most 90 days.",
    )
    concurrency: int = Field(
        default=2, ge=1, description="Destructions running at once (a global concurrency limit)."
    )
    delete_batch_rows: int = Field(
        validation_alias="OFFBOARD_DELETE_BATCH_ROWS",
        default=5_000,
        ge=1,
        description="Rows deleted per transaction during destruction.",
    )
    neighbours_audit: bool = Field(
        validation_alias="OFFBOARD_NEIGHBOURS_AUDIT",
        default=False,
        description="Also compare digests of every other tenant's data before and after "
        "destruction. For quiet platforms only: it reads the whole platform twice, and any "
        "neighbour's write during destruction refuses the certificate.",
    )
    compaction_interval: timedelta = Field(
        validation_alias="OFFBOARD_COMPACTION_INTERVAL",
        default=timedelta(days=7),
        description="Period of the compact flow, which rewrites the tables destroyed tenants "
        "had rows in: their deleted bytes leave the files by then, and planning counts it.",
    )
    compaction_method: Literal["vacuum-full", "pg_repack"] = Field(
        validation_alias="OFFBOARD_COMPACTION_METHOD",
        default="vacuum-full",
        description="How the compact flow rewrites a table: vacuum-full (an exclusive lock per "
        "table while it is rewritten: run it in a window) or pg_repack (online; needs the "
        "extension and Debian's postgresql-15-repack).",
    )
    deadline_warning: timedelta = Field(
        validation_alias="OFFBOARD_DEADLINE_WARNING",
        default=timedelta(days=14),
        description="The deadline watch flags cases whose destruction deadline is this close.",
    )

    @field_validator("grace")
    @classmethod
    def _grace_within_contract(cls, grace: timedelta) -> timedelta:
        if grace < timedelta(0) or grace > CONTRACT_DESTRUCTION_LIMIT:
            raise ValueError("OFFBOARD_DESTRUCTION_GRACE must be between 0 and 90 days")
        return grace


class EvidenceSettings(_Section):
    """Evidence that holds without trusting the operator: timestamps from an outside
    authority (RFC 3161) on each certified case's chain head and certificate."""

    model_config = _section_config("OFFBOARD_")

    timestamp_url: str = Field(
        default="",
        description="The RFC 3161 timestamp authority's URL (HTTP POST of a timestamp query). "
        "Empty: nothing is timestamped, and `offboard audit verify` says so.",
    )
    timestamp_ca: Path | None = Field(
        default=None,
        description="PEM file of the timestamp authority's root certificate(s), which every "
        "token is checked against before it is archived.",
    )
    timestamp_timeout: timedelta = Field(
        default=timedelta(seconds=30),
        description="How long to wait for the timestamp authority's answer.",
    )


# The flat names of 0.1 (keyword arguments, `replace`): which section and field each is now.
# The environment variables keep their names; this is for code that passed settings by name.
FLAT_NAMES: dict[str, tuple[str, str]] = {
    "database_url": ("platform", "database_url"),
    "ledger_url": ("platform", "ledger_url"),
    "tenant_column": ("platform", "tenant_column"),
    "tenant_schema_pattern": ("platform", "tenant_schema_pattern"),
    "registry_table": ("platform", "registry_table"),
    "global_tables": ("platform", "global_tables"),
    "excluded_tables": ("platform", "excluded_tables"),
    "file_reference_columns": ("platform", "file_reference_columns"),
    "shared_rows": ("platform", "shared_rows"),
    "files_url": ("stores", "files_url"),
    "delivery_url": ("stores", "delivery_url"),
    "delivery_regions": ("stores", "delivery_regions"),
    "archive_url": ("stores", "archive_url"),
    "backup_urls": ("stores", "backup_urls"),
    "gcs_signing_key_file": ("stores", "gcs_signing_key_file"),
    "gcs_signing_email": ("stores", "gcs_signing_email"),
    "soft_delete_retention": ("stores", "soft_delete_retention"),
    "keyring_url": ("keyring", "url"),
    "key_destroy_delay": ("keyring", "destroy_delay"),
    "link_base_url": ("delivery", "link_base_url"),
    "link_lifetime": ("delivery", "link_lifetime"),
    "reminders_before_expiry": ("delivery", "reminders_before_expiry"),
    "acknowledgement_timeout": ("delivery", "acknowledgement_timeout"),
    "case_watch_interval": ("delivery", "case_watch_interval"),
    "smtp_url": ("delivery", "smtp_url"),
    "smtp_plaintext_hosts": ("delivery", "smtp_plaintext_hosts"),
    "mail_from": ("delivery", "mail_from"),
    "staff_auth": ("delivery", "staff_auth"),
    "staff_user_header": ("delivery", "staff_user_header"),
    "reply_to": ("delivery", "reply_to"),
    "export_workers": ("export", "workers"),
    "export_split_rows": ("export", "split_rows"),
    "export_split_bytes": ("export", "split_bytes"),
    "export_concurrency": ("export", "concurrency"),
    "export_cluster": ("export", "cluster"),
    "export_replica_url": ("export", "replica_url"),
    "export_replica_wait": ("export", "replica_wait"),
    "parquet_row_group_rows": ("export", "parquet_row_group_rows"),
    "bundle_part_bytes": ("export", "bundle_part_bytes"),
    "destruction_grace": ("destruction", "grace"),
    "destruction_concurrency": ("destruction", "concurrency"),
    "delete_batch_rows": ("destruction", "delete_batch_rows"),
    "deadline_warning": ("destruction", "deadline_warning"),
    "neighbours_audit": ("destruction", "neighbours_audit"),
    "timestamp_url": ("evidence", "timestamp_url"),
    "timestamp_ca": ("evidence", "timestamp_ca"),
    "timestamp_timeout": ("evidence", "timestamp_timeout"),
}
