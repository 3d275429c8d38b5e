"""The data map's systems: each bound to a plug-in (its model here, named by `plugin`), to an
attested step, or to nothing yet."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from offboarding.datamap.references import DeclaredReference, SharedEntity

__all__ = [
    "PLUGIN_SYSTEMS",
    "Attestation",
    "AttestedSystem",
    "BoundSystem",
    "DeclaredReference",
    "ExcludedTable",
    "FilesSystem",
    "MariaDBSystem",
    "PgBackRestSystem",
    "PluginSystem",
    "PostgresSystem",
    "RedisSystem",
    "System",
    "TenantObject",
    "UnboundSystem",
]

# that no tenant id contains, or an end of the pattern ('page:*{tenant}:*' would match
# globex's 'page:x.acme:home' for acme).
_TENANT_PLACEHOLDER = "{tenant}"


def _holds_tenant_once(pattern: str | None) -> str | None:
    if pattern is not None and pattern.count(_TENANT_PLACEHOLDER) != 1:
        raise ValueError(f"{pattern!r} must hold {{tenant}} once")
    return pattern


# A schema's or a database's name that belongs wholly to one tenant: {tenant} in it once.
TenantPattern = Annotated[str | None, AfterValidator(_holds_tenant_once)]
_KEY_SEPARATORS = frozenset(":/|#")


class ExcludedTable(BaseModel):
    """A table left out of this system's export and destruction, with why, and, where it holds
    a tenant's rows, the system of the data map whose export and destruction cover its copy
    (a plug-in, or an attested step a role performs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    why: str = Field(min_length=1, description="Why it is left out, for the client and auditor.")
    handled_by: str | None = Field(
        default=None,
        description="The data map's system that exports and destroys the tenant's copy of "
        "these rows (e.g. 'search', an attested step). Required when the table holds the "
        "tenant's rows: otherwise the case stops.",
    )


def reasons(excluded: dict[str, str | ExcludedTable] | None) -> dict[str, str]:
    return {t: e if isinstance(e, str) else e.why for t, e in (excluded or {}).items()}


def handlers(excluded: dict[str, str | ExcludedTable] | None) -> dict[str, str]:
    return {
        t: e.handled_by
        for t, e in (excluded or {}).items()
        if isinstance(e, ExcludedTable) and e.handled_by
    }


_EXCLUDED = (
    "tables deliberately left out of export and destruction, each with why: a string, or "
    "{ why = '...', handled_by = '<system>' } naming the data map's system that covers the "
    "tenant's copy (required for a table that holds the tenant's rows). The bundle, the "
    "inventory and the certificate list them."
)


class TenantObject(BaseModel):
    """A database object the platform makes per tenant (a sequence a trigger creates for its
    numbering, a role, a publication), by its name with {tenant}: dropped with the tenant, or
    kept with the reason (the certificate names it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sequence", "role", "publication"]
    name: str = Field(
        description="Its name with {tenant}, a sequence's with its schema: "
        "'public.invoice_no_{tenant}', 'app_{tenant}_ro'."
    )
    action: Literal["drop", "keep"] = "drop"
    why: str = Field(default="", description="Why it is kept (required with action = 'keep').")

    @field_validator("name")
    @classmethod
    def _once(cls, name: str) -> str:
        if name.count(_TENANT_PLACEHOLDER) != 1:
            raise ValueError(f"{name!r} must hold {{tenant}} once")
        return name

    @model_validator(mode="after")
    def _kept_with_why(self) -> TenantObject:
        if self.action == "keep" and not self.why:
            raise ValueError(f"{self.kind} {self.name}: action = 'keep' needs why = '...'")
        return self


class _System(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(
        default="", description="What the system is and what it holds of a tenant."
    )


class PluginSystem(_System):
    """A system bound to a plug-in: `plugin` names its kind (offboarding/locations registers
    each kind with what it can do)."""

    # The platform's own system of this kind (the settings' URL): one, named as the kind.
    singleton: ClassVar[bool] = False

    plugin: str


class PostgresSystem(PluginSystem):
    """The platform's PostgreSQL database (OFFBOARD_DATABASE_URL): exported, destroyed with
    the proof by construction, verified. Its shape (owner column, global and excluded tables,
    file columns, shared rows) is declared here; a field left out is read from its old
    OFFBOARD_* variable if one is set (deprecated), else its default."""

    singleton: ClassVar[bool] = True
    plugin: Literal["postgres"]
    tenant_column: str | None = Field(
        default=None,
        min_length=1,
        description="The column naming each row's tenant in shared tables (default tenant_id).",
    )
    tenant_schema_pattern: TenantPattern = Field(
        default=None,
        description="The name of a schema that belongs wholly to one tenant (schema-per-tenant), "
        "with {tenant} (default 'tenant_{tenant}').",
    )
    global_tables: dict[Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+$")], str] | None = Field(
        default=None, description="schema.table of tables holding no tenant data, each with why."
    )
    excluded_tables: (
        dict[Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+$")], str | ExcludedTable] | None
    ) = Field(default=None, description=f"schema.table of {_EXCLUDED}")
    file_columns: list[Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+\.[^.\s]+$")]] | None = (
        Field(
            default=None,
            description="schema.table.column values that are keys of objects in the files store.",
        )
    )
    file_none: dict[Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+\.[^.\s]+$")], list[str]] = (
        Field(
            default_factory=dict,
            description="Per file column, the values that name no object besides NULL and '' "
            '(e.g. { "public.posts.image" = ["none", "-"] }).',
        )
    )
    shared_rows: dict[str, Literal["leave", "delete", "export"]] | None = Field(
        default=None,
        description="Per table, what happens to rows that reference both the tenant's rows and "
        "another tenant's: 'leave' them, 'delete' them with the tenant, or 'export' them "
        "without destroying them.",
    )
    owner_columns: dict[Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+$")], str] = Field(
        default_factory=dict,
        description="schema.table of tables naming their tenant in another column than "
        'tenant_column, each with that column, e.g. { "public.channels" = "teamid" }.',
    )
    references: list[DeclaredReference] = Field(
        default_factory=list,
        description="References the database has no foreign key for, each used exactly like "
        "one ([[systems.postgres.references]] with from, to, none, when).",
    )
    tenant_objects: list[TenantObject] = Field(
        default_factory=list,
        description="Objects the platform names after each tenant (sequences, roles, "
        "publications): dropped with it, or kept with why. One found and not declared stops "
        "the case.",
    )
    shared_entities: dict[Annotated[str, Field(pattern=r"^[^.\s]+\.[^.\s]+$")], SharedEntity] = (
        Field(
            default_factory=dict,
            description="schema.table of rows linked to tenants through a membership table "
            "(user profiles...), each with its membership and policy.",
        )
    )


def _folder_template(prefix: str | Literal[False]) -> str | Literal[False]:
    if prefix is False:
        return prefix
    if prefix.count(_TENANT_PLACEHOLDER) != 1 or not prefix.endswith("/") or "*" in prefix:
        raise ValueError(
            f"prefix {prefix!r} must hold {{tenant}} once and end with '/', with no wildcard, "
            "e.g. 'tenants/{tenant}/' or 'media/org-{tenant}/': a folder listed as it is (a "
            "layout with a varying part before the tenant, such as '<date>/teams/<team>/', is "
            "found through the rows that name its keys instead: prefix = false and file_columns)"
        )
    return prefix


class FilesSystem(PluginSystem):
    """The platform's object store of uploaded files (OFFBOARD_FILES_URL): the tenant's folder
    (its `prefix`), and every object the tenant's rows name (the postgres system's
    file_columns)."""

    singleton: ClassVar[bool] = True
    plugin: Literal["files"]
    prefix: Annotated[str | Literal[False], AfterValidator(_folder_template)] = Field(
        default="tenants/{tenant}/",
        description="The folder holding each tenant's objects, with {tenant}, ending with '/' "
        "(e.g. 'media/org-{tenant}/'); false where the product keeps no folder per tenant, so "
        "its objects are those the tenant's rows name (file_columns), thumbnails included.",
    )


class RedisSystem(PluginSystem):
    """A Redis cache: the tenant's keys, found by pattern, removed with SCAN and UNLINK,
    verified by a fresh scan. A cache holds copies: nothing of it goes into the bundle."""

    plugin: Literal["redis"]
    url: str = Field(description="redis://[user:password@]host:port/db (or ${VAR}).")
    patterns: list[str] = Field(
        min_length=1,
        description="Key patterns of a tenant's keys (Redis glob syntax), each with {tenant} "
        "between separators (: / | #) or at an end, e.g. 't:{tenant}:*'.",
    )
    data_dir: str | None = Field(
        default=None,
        description="The server's directory (its AOF and RDB files) as the pipeline's host "
        "reads it (a read-only mount), for the residue scan; by default CONFIG GET dir.",
    )

    @field_validator("patterns")
    @classmethod
    def _confined(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            _confine(pattern, _TENANT_PLACEHOLDER, "tenant", "'acme' would match 'acme-corp'")
        return patterns


def _confine(pattern: str, placeholder: str, whose: str, example: str) -> None:
    """A key pattern holds `placeholder` once, between separators no id contains (or at an
    end), so it can only match the keys of that one tenant (or person)."""
    if pattern.count(placeholder) != 1:
        raise ValueError(f"pattern {pattern!r} must contain {placeholder} exactly once")
    before, after = pattern.split(placeholder, 1)
    if (after and after[0] not in _KEY_SEPARATORS) or (
        before and before[-1] not in _KEY_SEPARATORS
    ):
        raise ValueError(
            f"pattern {pattern!r} could match another {whose}'s keys ({example}): put one of "
            f"{' '.join(sorted(_KEY_SEPARATORS))} right before and right after {placeholder} "
            "(or start or end the pattern with it), e.g. 't:{tenant}:u:{person}:*'"
        )


class PgBackRestSystem(PluginSystem):
    """The platform database's physical backups and WAL archive, made with pgBackRest. The
    rows are gone from the live database; every backup set taken while they existed (and the
    WAL archived before destruction) expires under the repository's retention, read from
    pgBackRest's own configuration. Planning starts destruction early enough that the last
    of them is gone by the deadline; `early_expiry` (operator policy) removes them at once."""

    plugin: Literal["pgbackrest"]
    stanza: str = Field(min_length=1, description="The stanza of the platform database.")
    config: Path = Field(
        default=Path("/etc/pgbackrest/pgbackrest.conf"),
        description="pgBackRest's configuration file, where the retention is read.",
    )
    repo: int = Field(default=1, ge=1, le=256, description="The repository (repoN-...).")
    command: list[str] = Field(
        default=["pgbackrest"],
        min_length=1,
        description="How to run pgBackRest as the repository's owner, e.g. "
        "['sudo', '-u', 'postgres', 'pgbackrest'] or an ssh to the repository host.",
    )
    full_every: timedelta = Field(
        description="How often a full backup runs (the operator's schedule, e.g. 'P7D')."
    )
    backup_every: timedelta = Field(
        default=timedelta(days=1),
        description="How often any backup runs: expiry happens when one does (e.g. 'P1D').",
    )
    early_expiry: bool = Field(
        default=False,
        description="Operator policy: after destruction, take a full backup and expire every "
        "older set and the WAL before it at once (recorded), instead of waiting for retention.",
    )


class MariaDBSystem(PluginSystem):
    """A MariaDB or MySQL database of the platform: classified from its own catalogue like the
    PostgreSQL one (a tenant column, or foreign keys to tenant rows), exported from one
    consistent snapshot into Parquet, destroyed with the same proof by construction."""

    plugin: Literal["mariadb"]
    url: str = Field(description="mysql://user:password@host:port/database (or ${VAR}).")
    tenant_column: str = Field(default="tenant_id", description="The owner column.")
    global_tables: dict[str, str] = Field(
        default_factory=dict, description="Tables holding no tenant data, each with why."
    )
    excluded_tables: dict[str, str | ExcludedTable] = Field(
        default_factory=dict, description=f"Names of {_EXCLUDED}"
    )
    shared_rows: dict[str, Literal["leave", "delete", "export"]] = Field(
        default_factory=dict,
        description="Per table, what happens to rows that reference both the tenant's rows and "
        "another tenant's: 'leave' them, 'delete' them with the tenant, or 'export' them "
        "without destroying them.",
    )
    tenant_database_pattern: TenantPattern = Field(
        default=None,
        description="A database on the same server that belongs wholly to one tenant, e.g. "
        "'wiki_{tenant}': every table in it is exported whole, and it is dropped whole.",
    )
    owner_columns: dict[str, str] = Field(
        default_factory=dict,
        description="Tables naming their tenant in another column than tenant_column, each "
        "with that column.",
    )
    data_dir: str | None = Field(
        default=None,
        description="The server's data directory as the pipeline's host reads it (a read-only "
        "mount), for the residue scan; by default the server's own @@datadir, on this host.",
    )
    tenant_objects: list[TenantObject] = Field(
        default_factory=list,
        description="Sequences the platform names after each tenant (kind = 'sequence', name "
        "without the database): dropped with it, or kept with why. One found and not declared "
        "stops the case.",
    )

    @field_validator("tenant_objects")
    @classmethod
    def _sequences_only(cls, objects: list[TenantObject]) -> list[TenantObject]:
        for obj in objects:
            if obj.kind != "sequence":
                raise ValueError(
                    f"{obj.kind} {obj.name}: a MariaDB system declares its sequences; users and "
                    "roles are the server's (declare them as an attested step)"
                )
        return objects

    references: list[DeclaredReference] = Field(
        default_factory=list,
        description="References the database has no foreign key for, each used exactly like "
        "one: from = 'posts(channel_id)', to = 'channels(id)' (tables without the database).",
    )
    shared_entities: dict[str, SharedEntity] = Field(
        default_factory=dict,
        description="Tables of rows linked to tenants through a membership table (user "
        "profiles...), each with its membership ('members(user_id)') and policy.",
    )


class Attestation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(min_length=1, description="Who confirms, e.g. 'search administrator'.")
    procedure: str = Field(
        min_length=1, description="What they do, e.g. 'delete the index t-{tenant}'."
    )
    within: timedelta = Field(
        default=timedelta(days=30),
        description="Time allowed once destruction starts (ISO 8601 duration, e.g. 'P30D'); "
        "never later than the case's destruction deadline.",
    )
    reminder_every: timedelta = Field(
        default=timedelta(days=7), description="How often the role is reminded until it confirms."
    )
    notify: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="The role's address for reminders (the case watch sends them).",
    )


class AttestedSystem(_System):
    """A system the pipeline cannot reach: a named role performs the destruction and confirms
    it, with an evidence reference. The certificate lists it as attested, never as verified."""

    attested: Attestation


class UnboundSystem(_System):
    """Declared, but bound to nothing yet: a case stops at its inventory until it is bound."""


System = (
    PostgresSystem
    | FilesSystem
    | RedisSystem
    | PgBackRestSystem
    | MariaDBSystem
    | AttestedSystem
    | UnboundSystem
)
BoundSystem = PluginSystem
# The models of the plug-ins' [systems.<name>] tables, each naming its kind in `plugin`; the
# plug-ins' registrations (offboarding/locations) name these models, and a test keeps the two
# in step.
PLUGIN_SYSTEMS: tuple[type[PluginSystem], ...] = (
    PostgresSystem, FilesSystem, RedisSystem, PgBackRestSystem, MariaDBSystem,
)  # fmt: skip


def _kind(model: type[PluginSystem]) -> str:
    (kind,) = get_args(model.model_fields["plugin"].annotation)
    return str(kind)


_PLUGINS: dict[str, type[PluginSystem]] = {_kind(model): model for model in PLUGIN_SYSTEMS}
# The platform's database and files store are the settings' own: one of each, under its name.
_SINGLETONS = tuple(kind for kind, model in _PLUGINS.items() if model.singleton)
