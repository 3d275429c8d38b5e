"""The data map: every system of the platform that holds tenant data, and how each is handled.

One TOML file (OFFBOARD_DATAMAP; JSON Schema in schemas/datamap.json) names each system and
binds it either to a location plug-in, whose destruction the pipeline performs and verifies,
or to an attested step, which a named role performs and confirms through a Prefect form. A
system declared with neither is *unbound*: `offboard datamap check` reports it, and a case
stops at its inventory until it is bound. Without a data map, the platform is the one
database and the one files store of the settings (the first release's behaviour).

    [systems.postgres]
    description = "The platform's database"
    plugin = "postgres"

    [systems.cache]
    description = "Page and session cache"
    plugin = "redis"
    url = "${CACHE_URL}"                 # ${VAR}: read from the environment (secrets stay there)
    patterns = ["t:{tenant}:*"]

    [systems.search]
    description = "Full-text search (managed OpenSearch)"
    attested = { role = "search administrator", procedure = "delete index t-{tenant}" }

Values may name environment variables as ${VAR}, so connection strings with passwords stay
out of the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from offboarding.core.errors import ConfigurationError
from offboarding.core.records import SystemEntry

__all__ = [
    "DEFAULT_DATAMAP",
    "PLUGIN_SYSTEMS",
    "Attestation",
    "AttestedSystem",
    "BoundSystem",
    "ContactSystem",
    "ContactsScope",
    "DataMap",
    "FilesSystem",
    "FreezeHook",
    "HttpFreezeHook",
    "MariaDBSystem",
    "PersonDeclaration",
    "PersonScope",
    "PersonSystem",
    "PersonTable",
    "PgBackRestSystem",
    "PluginSystem",
    "PostgresSystem",
    "RedisSystem",
    "System",
    "TenantsTable",
    "UnboundSystem",
    "load_datamap",
    "parse_datamap",
    "system_entries",
]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A pattern may only match the tenant's own keys: on each side of {tenant} comes a separator
# that no tenant id contains, or an end of the pattern ('page:*{tenant}:*' would match
# globex's 'page:x.acme:home' for acme).
_TENANT_PLACEHOLDER = "{tenant}"
_KEY_SEPARATORS = frozenset(":/|#")


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
    the proof by construction, verified."""

    singleton: ClassVar[bool] = True
    plugin: Literal["postgres"]


class FilesSystem(PluginSystem):
    """The platform's object store of uploaded files (OFFBOARD_FILES_URL)."""

    singleton: ClassVar[bool] = True
    plugin: Literal["files"]


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
    excluded_tables: dict[str, str] = Field(
        default_factory=dict, description="Tables deliberately left out, each with why."
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


class FreezeHook(BaseModel):
    """How the platform makes a tenant read-only, and how the case checks that it did: two
    SQL statements run on the platform database with the tenant's id bound as %(tenant)s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str = Field(
        min_length=1,
        description='Makes the tenant read-only, e.g. "UPDATE public.tenants SET read_only = '
        'true WHERE id = %(tenant)s". Run at every attempt: it must be idempotent.',
    )
    check: str = Field(
        min_length=1,
        description="Returns one row whose first column is true once the tenant is read-only, "
        'e.g. "SELECT read_only FROM public.tenants WHERE id = %(tenant)s".',
    )


class HttpFreezeHook(BaseModel):
    """How the platform makes a tenant read-only through its API: a call, then a GET whose
    JSON answer says so. `{tenant}` in the URLs is the tenant's id, URL-encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        pattern=r"^https?://",
        description="Called to freeze, e.g. 'https://platform/api/"
        "tenants/{tenant}/freeze'. Called at every attempt: it must be idempotent.",
    )
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    check_url: str = Field(
        pattern=r"^https?://", description="GET after the call; answers a JSON object."
    )
    check_field: str = Field(
        default="read_only", description="The answer's field that must be true once frozen."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description='e.g. { Authorization = "Bearer ${TOKEN}" }.'
    )
    timeout: float = Field(default=30, gt=0, le=600, description="Seconds per call.")


class TenantsTable(BaseModel):
    """Where the platform keeps its tenants, in its own columns. The pipeline adds nothing to
    it: its cases live in its own ledger (the schema `offboarding` of the same database)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(
        default=None,
        pattern=r"^[^.\s]+\.[^.\s]+$",
        description="schema.table of the platform's tenants (default: OFFBOARD_REGISTRY_TABLE).",
    )
    id: str = Field(
        default="id", description="The column of the tenant's id, as the platform has it."
    )
    name: str | None = Field(default="name", description="The tenant's display name, if any.")
    region: str | None = Field(
        default="region", description="Where the tenant's data must stay (delivery regions)."
    )
    contact: str | None = Field(
        default="contact_email", description="The address the delivery notice goes to."
    )
    recipient: str | None = Field(
        default=None,
        description="The column holding the client's age recipient (an X25519 public key, "
        "age1...). A tenant with one receives its bundle encrypted to it, so only the holder "
        "of the matching identity can open it; without one, in clear.",
    )
    freeze: FreezeHook | HttpFreezeHook | None = Field(
        default=None,
        description="How the tenant is made read-only. Without one the platform keeps "
        "accepting writes: rows added after the export then stop the destruction.",
    )


_QUALIFIED = r"^[^.\s]+\.[^.\s]+$"
_PERSON_PLACEHOLDER = "{person}"


class PersonTable(BaseModel):
    """How one table's rows point at a person, and what an erasure does with them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str = Field(
        min_length=1,
        description="The column holding the person's key (e.g. author_id): the person's rows "
        "of this table are those where it equals the person's key, within the tenant.",
    )
    erase: Literal["delete", "pseudonymise"] = Field(
        description="'delete' removes the person's rows; 'pseudonymise' keeps them (where "
        "deleting would break the client's shared content: a comment others answered, a post "
        "others commented) and replaces their personal columns.",
    )
    personal: list[str] = Field(
        default_factory=list,
        description="Columns holding the person's own words or values, replaced when the row "
        "is kept: text by the erasure's pseudonym, anything else by NULL.",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Columns naming an object of the files store that the row's person "
        "uploaded (e.g. object_key): exported with the rows, deleted with them.",
    )

    @model_validator(mode="after")
    def _files_go_with_rows(self) -> PersonTable:
        if self.files and self.erase != "delete":
            raise ValueError(
                "files columns are deleted with their rows: a pseudonymised row would keep "
                'naming a deleted file; use erase = "delete" for this table, or drop files'
            )
        return self


class PersonSystem(BaseModel):
    """How a system other than the database and the files holds a person's data: found and
    erased by its plug-in (`tables` for a database, `patterns` for a cache), copies that
    expire by themselves (`lingers`), a role that erases and confirms (`attested`), or nothing
    per person (`holds_nothing`, with why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lingers: timedelta | None = Field(
        default=None, description="Copies expire by themselves within this period (e.g. P1D)."
    )
    attested: Attestation | None = Field(
        default=None, description="A role erases the person there and confirms."
    )
    holds_nothing: str | None = Field(
        default=None, min_length=1, description="Why the system holds nothing of one person."
    )
    tables: dict[Annotated[str, Field(pattern=_QUALIFIED)], PersonTable] = Field(
        default_factory=dict,
        description="For a database whose plug-in finds and erases a person (mariadb): every "
        "table whose rows point at the person, as [person.tables] does for the platform's "
        "database. Each foreign key to those rows is checked at each request.",
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="For a cache whose plug-in finds and erases a person (redis): key patterns "
        "of one person's keys, each with {tenant} and {person} between separators, e.g. "
        "'session:{tenant}:{person}:*'.",
    )
    why: str = Field(default="", description="What the system holds of a person, in a line.")

    @field_validator("patterns")
    @classmethod
    def _one_persons_keys(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            _confine(pattern, _TENANT_PLACEHOLDER, "tenant", "'acme' would match 'acme-corp'")
            _confine(pattern, _PERSON_PLACEHOLDER, "person", "person 7 would match 71")
        return patterns

    @model_validator(mode="after")
    def _one_way(self) -> PersonSystem:
        ways = ("tables", "patterns", "lingers", "attested", "holds_nothing")
        given = [n for n in ways if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of tables (a database plug-in finds the person), patterns (a "
                "cache plug-in finds the person's keys), lingers (a duration), attested (role "
                f"and procedure) or holds_nothing (why); found {', '.join(given) or 'none'}"
            )
        return self

    @property
    def by_plugin(self) -> bool:
        """The system's plug-in finds and erases the person itself."""
        return bool(self.tables or self.patterns)


class PersonScope(BaseModel):
    """How a person of a tenant is found in every system, for the client's requests about one
    person (clause 2.2.7): access, portability, erasure. Every foreign key that points at the
    person table must be declared in `tables` (the catalogue is checked at each request), and
    every other system of the data map in `systems`: nothing is assumed to hold nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(pattern=_QUALIFIED, description="schema.table of the platform's people.")
    key: str = Field(default="id", min_length=1, description="The person table's key column.")
    erase: Literal["delete", "pseudonymise"] = Field(
        default="delete",
        description="What erasure does with the person's own row: delete it (the pseudonymised "
        "rows elsewhere then lose their reference), or keep it with its personal columns "
        "replaced.",
    )
    personal: list[str] = Field(
        default_factory=list,
        description="The person row's personal columns, replaced when erase = 'pseudonymise'.",
    )
    files: list[str] = Field(
        default_factory=list,
        description="Object keys of the person's own files in the files store, with {tenant} "
        "and {person}, e.g. 'tenants/{tenant}/avatars/{person}.bin'.",
    )
    tables: dict[Annotated[str, Field(pattern=_QUALIFIED)], PersonTable] = Field(
        default_factory=dict, description="Every table whose rows point at a person."
    )
    systems: dict[str, PersonSystem] = Field(
        default_factory=dict, description="Every other system of the data map, for one person."
    )

    @field_validator("files")
    @classmethod
    def _files_confined(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not pattern.startswith("tenants/{tenant}/"):
                raise ValueError(
                    f"file {pattern!r} must start with 'tenants/{{tenant}}/': a person's files "
                    "are the tenant's, under its prefix"
                )
            if pattern.count(_PERSON_PLACEHOLDER) != 1 or pattern.count(_TENANT_PLACEHOLDER) != 1:
                raise ValueError(
                    f"file {pattern!r} must name {_TENANT_PLACEHOLDER} and {_PERSON_PLACEHOLDER} "
                    "once each"
                )
            if any(ch in pattern for ch in "*?["):
                raise ValueError(f"file {pattern!r} is a key, not a pattern: no * ? [")
        return patterns

    @model_validator(mode="after")
    def _pseudonymised_row(self) -> PersonScope:
        if self.table in self.tables:
            raise ValueError(
                f"[person.tables] names the person table {self.table} itself: its rows are "
                f"selected by the key {self.key!r} alone, and nothing may select others there "
                "(by = 'manager_id' would select the person's reports, not the person). Remove "
                f"it. Other people's rows that point at the person stay theirs: keep the "
                'person\'s row with erase = "pseudonymise" under [person] so they can'
            )
        if self.erase == "delete" and self.personal:
            raise ValueError(
                "personal lists the person row's columns to replace when the row is kept: "
                'with erase = "delete" the whole row goes; drop personal, or keep the row'
            )
        return self


# What a plug-in is told of one person: the [person] scope for the system holding the person
# table (its tables, files and the person's own row), a [person.systems.<name>] elsewhere.
PersonDeclaration = PersonSystem | PersonScope


class ContactSystem(BaseModel):
    """One of the operator's own systems that holds the client's contacts (a CRM, billing, the
    support desk): a role erases them there, three years after the contract's end, and confirms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    why: str = Field(default="", description="What the system holds of the client's contacts.")
    attested: Attestation


class ContactsScope(BaseModel):
    """Where the operator keeps the client's contacts beyond the pipeline's own ledger (clause
    1.1.4: no longer than three years after the relationship ends)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")], ContactSystem] = Field(
        default_factory=dict, description="Each system holding contacts, by name."
    )


class DataMap(BaseModel):
    """Every system of the platform that holds tenant data (TOML, OFFBOARD_DATAMAP), each bound
    to a plug-in (verified destruction) or an attested step (a role confirms)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="tenant-offboarding data map")

    _source: str = PrivateAttr(default="")  # the file it was read from, for messages
    tenants: TenantsTable = Field(
        default_factory=TenantsTable,
        description="The platform's tenants table, its columns, and its freeze hook.",
    )
    systems: dict[
        Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")],
        Annotated[System, Field(union_mode="left_to_right")],
    ] = Field(description="Every system holding tenant data, by name.")
    person: PersonScope | None = Field(
        default=None,
        description="How one person of a tenant is found in every system (person requests).",
    )
    contacts: ContactsScope = Field(
        default_factory=ContactsScope,
        description="The operator's other systems holding the client's contacts, erased three "
        "years after the contract's end by the role each names.",
    )

    @property
    def source(self) -> str:
        return self._source

    def require_person_scope(self) -> PersonScope:
        """The person scope, checked against the systems: every system beside the database and
        the files declared for one person, and no other."""
        if self.person is None:
            raise ConfigurationError(
                f"the data map {self._source} has no [person] table: a person request needs to "
                "know how a person is found in every system (the person table and its key, "
                "each table pointing at it, each other system); docs/operators.md shows one"
            )
        others = set(self.systems) - set(_SINGLETONS)
        missing = sorted(others - set(self.person.systems))
        unknown = sorted(set(self.person.systems) - others)
        if missing:
            raise ConfigurationError(
                f"the data map {self._source} does not say how system(s) {', '.join(missing)} "
                "hold a person's data: add [person.systems.<name>] with lingers, attested or "
                "holds_nothing for each, so no copy goes unanswered"
            )
        if unknown:
            raise ConfigurationError(
                f"the data map {self._source}: [person.systems] names {', '.join(unknown)}, "
                "which [systems] does not declare (the database and the files are covered by "
                "[person.tables] and [person] files)"
            )
        return self.person

    def bound(self) -> dict[str, BoundSystem]:
        return {n: s for n, s in self.systems.items() if isinstance(s, PluginSystem)}

    def attested(self) -> dict[str, AttestedSystem]:
        return {n: s for n, s in self.systems.items() if isinstance(s, AttestedSystem)}

    def unbound(self) -> list[str]:
        return [n for n, s in self.systems.items() if isinstance(s, UnboundSystem)]

    def require_bound(self) -> None:
        unbound = self.unbound()
        if unbound:
            raise ConfigurationError(
                f"the data map {self._source} declares systems bound to nothing: "
                f'{", ".join(unbound)}. Bind each to a plug-in (plugin = "redis", ...) or to '
                "an attested step ([systems.<name>.attested] with role and procedure); the "
                "case cannot take its inventory until then, so no copy goes uncounted"
            )


def _named(datamap: DataMap, source: str) -> DataMap:
    datamap._source = source
    return datamap


DEFAULT_DATAMAP = _named(
    DataMap(
        systems={
            "postgres": PostgresSystem(plugin="postgres", description="The platform's database"),
            "files": FilesSystem(plugin="files", description="The platform's uploaded files"),
        }
    ),
    "(default: the settings' database and files store)",
)


def system_entries(datamap: DataMap) -> list[SystemEntry]:
    """Every bound system as the inventory and the certificate list it."""
    entries = []
    for name, system in datamap.systems.items():
        if isinstance(system, AttestedSystem):
            entries.append(
                SystemEntry(
                    name=name,
                    description=system.description,
                    handling="attested",
                    method=f"{system.attested.role}: {system.attested.procedure}",
                )
            )
        elif not isinstance(system, UnboundSystem):
            entries.append(
                SystemEntry(
                    name=name,
                    description=system.description,
                    handling="verified",
                    method=f"plug-in {system.plugin}",
                )
            )
    return entries


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigurationError(
                    f"the data map's {where} names ${{{name}}}, which is not set in the "
                    f"environment: set {name}, or write the value in the file"
                )
            return os.environ[name]

        return _ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _system(name: str, raw: Any) -> System:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"data map: [systems.{name}] must be a table")
    fields = _expand(raw, f"systems.{name}")
    plugin, attested = fields.get("plugin"), fields.get("attested")
    if plugin is not None and attested is not None:
        raise ConfigurationError(
            f"data map: system {name!r} is bound twice (plugin = {plugin!r} and attested): "
            "keep the plug-in if the pipeline can reach the system, else the attestation"
        )
    if plugin is not None and plugin not in _PLUGINS:
        raise ConfigurationError(
            f"data map: system {name!r} names plugin {plugin!r}, which does not exist: use one "
            f"of {', '.join(sorted(_PLUGINS))}, or bind it as attested"
        )
    if plugin in _SINGLETONS and name != plugin:
        raise ConfigurationError(
            f"data map: the {plugin} plug-in is the platform's own (OFFBOARD_"
            f"{'DATABASE' if plugin == 'postgres' else 'FILES'}_URL): declare it as "
            f"[systems.{plugin}], not [systems.{name}]"
        )
    model: type[_System] = (
        _PLUGINS[plugin] if plugin else AttestedSystem if attested is not None else UnboundSystem
    )
    try:
        return model.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'system'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"data map: system {name!r}: {problems}") from None


def parse_datamap(document: dict[str, Any], source: str = "") -> DataMap:
    unknown = set(document) - {"systems", "tenants", "person", "contacts"}
    if unknown:
        raise ConfigurationError(
            f"data map {source}: unknown top-level key(s) {sorted(unknown)}; the file holds "
            "[tenants], [systems.<name>], [person] and [contacts] tables"
        )
    try:
        contacts = ContactsScope.model_validate(_expand(document.get("contacts", {}), "contacts"))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'contacts'}: {e['msg']}"
            for e in error.errors()
        )
        raise ConfigurationError(f"data map {source}: [contacts]: {problems}") from None
    person: PersonScope | None = None
    if "person" in document:
        try:
            person = PersonScope.model_validate(_expand(document["person"], "person"))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'person'}: {e['msg']}"
                for e in error.errors()
            )
            raise ConfigurationError(f"data map {source}: [person]: {problems}") from None
    try:
        tenants = TenantsTable.model_validate(_expand(document.get("tenants", {}), "tenants"))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"data map {source}: [tenants]: {problems}") from None
    systems_raw = document.get("systems")
    if not isinstance(systems_raw, dict) or not systems_raw:
        raise ConfigurationError(
            f"data map {source}: no [systems.<name>] table: declare every system that holds "
            'tenant data, at least [systems.postgres] with plugin = "postgres"'
        )
    if "postgres" not in systems_raw:
        raise ConfigurationError(
            f"data map {source}: [systems.postgres] is missing: the platform's database (with "
            'its tenants) is a system of every platform; declare it with plugin = "postgres"'
        )
    systems = {name: _system(name, raw) for name, raw in systems_raw.items()}
    try:
        return _named(
            DataMap(systems=systems, tenants=tenants, person=person, contacts=contacts), source
        )
    except ValidationError as error:
        raise ConfigurationError(
            f"data map {source}: system names are 1-40 lowercase letters, digits and dashes, "
            f"starting with a letter ({error.error_count()} not)"
        ) from None


def load_datamap(path: Path | None) -> DataMap:
    """The data map at `path`, or the default one (the settings' database and files)."""
    if path is None:
        return DEFAULT_DATAMAP
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(
            f"OFFBOARD_DATAMAP names {path}, which does not exist: give the path of the data "
            "map (docs/operators.md has an example), or unset it for the default"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"data map {path} is not valid TOML: {error}") from None
    return parse_datamap(document, str(path))
