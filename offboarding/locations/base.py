"""The one interface every place tenant data lives implements: it describes itself, and has
the four verbs inventory, export, destroy, verify; plus a digest of the neighbours' data there,
for the opt-in audit mode that compares it before and after destruction.

A plug-in (a kind of platform system the data map binds: PostgreSQL, MariaDB, Redis...) says
what more it can do in its one registration, `Plugin`: each `Capability` it declares is a
protocol below that its class implements, and the pipeline asks only plug-ins that declare it
(offboarding/locations/__init__.py reads the registrations)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel

from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.names import inside
from offboarding.core.records import (
    CaseRef,
    ExportedPart,
    FileItem,
    ForeignKeySchema,
    LocationInventory,
    TableItem,
)
from offboarding.datamap import PersonDeclaration, PersonScope, PersonSystem
from offboarding.planning import CatalogTable
from offboarding.stores import ObjectStore, sha256_file

__all__ = [
    "Capability",
    "CopiesOnly",
    "DataLocation",
    "ExportPlan",
    "ExportProgress",
    "FannedOut",
    "IsolationCheck",
    "Lingering",
    "LocationExport",
    "LocationFacts",
    "PartSink",
    "PartTask",
    "PersonAccess",
    "PersonErased",
    "PersonErasure",
    "PersonExport",
    "PersonItems",
    "Plugin",
    "Reachable",
    "Remaining",
    "Removal",
    "RetentionRules",
    "RuleOutcome",
    "ScratchSink",
    "Stage",
    "StagingSink",
    "foreign_key_schemas",
    "quiet",
    "require_system_declaration",
    "require_whole_scope",
    "scratch_dir",
    "write_case_report",
]


def quiet(_: str) -> None:
    """Tells no one (the default for `say`)."""


# Called as parts are written: (parts done, parts in all, rows written so far).
ExportProgress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class LocationExport:
    parts: list[ExportedPart]
    snapshot_time: datetime | None = None


@dataclass(frozen=True)
class PartTask:
    """One part of a location's export that any worker, on any machine, can write on its own:
    it names the snapshot to import and what to read (`job`, the location's own). Small and
    picklable: it travels to the distributed engine's workers. No tenant data in it."""

    location: str
    snapshot: str
    relative: str  # the part's path in the bundle, e.g. tables/public.posts/part-00003.parquet
    job: Any


@dataclass(frozen=True)
class ExportPlan:
    """A location's export cut into parts, while its coordinator holds the snapshot open."""

    snapshot: str
    snapshot_time: datetime
    tasks: list[PartTask]


class PartSink(Protocol):
    """Where a worker puts the parts it writes."""

    def target(self, relative: str) -> Path:
        """The local file to write the part into."""
        ...

    def commit(self, relative: str) -> tuple[str, int, str]:
        """The part is written: keep it; return its source reference, size and sha256."""
        ...


class ScratchSink:
    """Parts stay in the case's scratch space on this worker (a single-process export)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def target(self, relative: str) -> Path:
        path = inside(self.root, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, relative: str) -> tuple[str, int, str]:
        path = inside(self.root, relative)
        return f"scratch:{relative}", path.stat().st_size, sha256_file(path)


class StagingSink:
    """Parts go to the case's staging area in a store as soon as each is written, and leave
    the worker's disk: a worker holds one part per thread whatever the tenant's size, and
    the packaging step, on any machine, reads them from the store. A retried part overwrites
    its own object: nothing is duplicated."""

    def __init__(self, store: ObjectStore, prefix: str, scratch: Path) -> None:
        self.store, self.prefix, self.scratch = store, prefix, scratch

    def target(self, relative: str) -> Path:
        path = inside(self.scratch, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, relative: str) -> tuple[str, int, str]:
        path = inside(self.scratch, relative)
        size, digest = path.stat().st_size, sha256_file(path)
        stored = self.store.put_file(self.prefix + relative, path)
        if stored.sha256 != digest:
            raise IntegrityError(
                f"{self.store.url}/{self.prefix}{relative}: stored with other bytes than "
                "written; the part is retried"
            )
        path.unlink()
        return f"staged:{relative}", size, digest


@runtime_checkable
class FannedOut(Protocol):
    """A location whose export is cut into parts that workers run anywhere, each importing
    the snapshot its coordinator exported and holds open."""

    def plan_export(
        self, case: CaseRef, inventory: LocationInventory
    ) -> AbstractContextManager[ExportPlan]:
        """Take and export the snapshot, plan the parts; the snapshot stays valid until the
        context exits, so every part must be done by then."""
        ...

    def export_part(self, case: CaseRef, task: PartTask, sink: PartSink) -> ExportedPart:
        """Write one part, reading in the task's snapshot."""
        ...


@dataclass(frozen=True)
class Removal:
    items_before: int
    bytes_before: int
    items_removed: int
    technique: str
    method: Literal["clear", "purge"] = "clear"
    # How the removal was confined to the tenant, and what it checked as it went: the
    # certificate's evidence that nothing else was touched.
    isolation: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Remaining:
    items: int
    verification: str
    # Copies that cannot be removed yet but stop existing at this time (soft-deleted objects,
    # a key whose destruction is scheduled): the certificate states the date.
    pending_until: datetime | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LocationFacts:
    """What a location says of itself: the certificate's line for it (NIST SP 800-88 record
    fields) and what the planning of destruction must know. Never tenant data."""

    media: str  # where: the kind of storage and its address
    method: Literal["clear", "purge"]  # clear = logical deletion; purge = cryptographic erase
    technique: str  # how the tenant's data is removed
    verification_method: str  # how its absence is checked, independently of the removal
    versioned: bool = False  # keeps older generations of what it holds: every one is removed
    lingering: str = ""  # copies that outlive destruction for a while (soft delete, key delay)


class DataLocation(Protocol):
    name: str

    def describe(self) -> LocationFacts: ...

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        """What the location holds of the tenant. `dry_run` (support staff's look before a
        case) lists what would stop a case instead of raising."""
        ...

    def export(
        self,
        case: CaseRef,
        inventory: LocationInventory,
        scratch: Path,
        progress: ExportProgress | None = None,
    ) -> LocationExport:
        """Write the tenant's data as bundle parts under `scratch` (or name store objects),
        telling `progress` as parts are done."""
        ...

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        """Remove every copy of the tenant's data here; a location already empty is fine.
        `inventoried` is the frozen inventory's count per table (or other item): a location
        that counts what it removes refuses to remove more than was inventoried."""
        ...

    def verify(self, case: CaseRef) -> Remaining:
        """Re-scan independently of `destroy` and count what is left of the tenant."""
        ...

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        """A digest of every other tenant's data here, equal before and after destruction.
        `excluded` tenants have open cases of their own, whose steps change their data."""
        ...


@runtime_checkable
class Reachable(Protocol):
    def reach(self) -> str:
        """Answer with what was reached (kind, version, address: never tenant data), or raise
        an error that says what to check (`offboard datamap check`)."""
        ...


@runtime_checkable
class IsolationCheck(Protocol):
    def check_isolation(
        self, case: CaseRef, inventoried: Mapping[str, int] | None = None
    ) -> dict[str, str]:
        """Before any system is destroyed: list the tenant's items and prove that removing
        them touches nothing of anyone else, changing nothing. Raises (an isolation breach
        when another tenant's data is involved) otherwise. Returns the rows shared with other
        tenants, per table, and how they are handled, for the certificate."""
        ...


@runtime_checkable
class Lingering(Protocol):
    def lingering_delay(self) -> tuple[timedelta, str]:
        """How long after destruction the system's last copy of the tenant may live, and the
        setting that makes it so: planning starts destruction this much earlier."""
        ...


@dataclass(frozen=True)
class PersonItems:
    """One person's items in a system, counted, never their values: per table (or key
    pattern) the rows (or keys), and their bytes."""

    counts: dict[str, int]
    sizes: dict[str, int]  # bytes per table or pattern (estimated for rows)
    objects: int = 0  # objects of the files store its rows name, going with them
    object_bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class PersonExport:
    """One person's rows of a system, written as bundle parts, with the tables they come from
    (the inventory the person's bundle reconciles with)."""

    tables: list[TableItem]
    parts: list[ExportedPart]
    files: list[FileItem] = field(default_factory=list)  # objects the rows name, in the bundle
    snapshot_time: datetime | None = None


@dataclass(frozen=True)
class PersonErased:
    """What erasing one person did in a system, and how it was checked (for the certificate)."""

    deleted: dict[str, int]
    pseudonymised: dict[str, int]
    verification: str
    objects: int = 0  # objects of the files store its rows named, deleted with them
    generations: int = 0
    object_bytes: int = 0
    triggers: dict[str, list[str]] = field(default_factory=dict)  # the platform's, that ran


@runtime_checkable
class PersonAccess(Protocol):
    def find_person(self, tenant: str, person: str, declared: PersonDeclaration) -> PersonItems:
        """Count the person's items here, within the tenant, as the data map declares them."""
        ...

    def export_person(
        self, tenant: str, person: str, declared: PersonDeclaration, scratch: Path
    ) -> PersonExport:
        """Write the person's items as bundle parts under `scratch` (an access answer)."""
        ...


@runtime_checkable
class PersonErasure(Protocol):
    def find_person(self, tenant: str, person: str, declared: PersonDeclaration) -> PersonItems: ...

    def erase_person(
        self,
        tenant: str,
        person: str,
        declared: PersonDeclaration,
        replacement: str,
        *,
        person_kept: bool = False,
        say: Callable[[str], None] = quiet,
    ) -> PersonErased:
        """Erase the person's items here, as the data map declares (deleted, or kept with
        their personal values replaced by `replacement` or NULL, and their reference to the
        person cleared unless `person_kept`: the person's own row stays pseudonymised),
        touching nothing of anyone else's, checked before it is final; raise, changing
        nothing, when it cannot be. Run again, it finds nothing and changes nothing. `say`
        tells people what happens (an attempt started again); never a value of the person."""
        ...


@dataclass(frozen=True)
class RuleOutcome:
    """One run of one retention rule: its cutoff, the rows and objects deleted, or why none."""

    cutoff: datetime
    deleted: int
    files: int
    refused: str = ""


@runtime_checkable
class RetentionRules(Protocol):
    def check_retention_rule(
        self, tenant: str, target: str, age_column: str, files: str | None
    ) -> None:
        """Refuse a rule that could reach another tenant's rows or names the wrong columns."""
        ...

    def run_retention_rule(
        self,
        tenant: str,
        ref: str,
        target: str,
        age_column: str,
        period: str,
        files: str | None,
        now: datetime,
    ) -> RuleOutcome:
        """Delete the tenant's rows of `target` older than `period`, provably."""
        ...


def require_system_declaration(declared: PersonDeclaration, name: str) -> PersonSystem:
    """A plug-in that finds a person by [person.systems.<name>] is given that declaration."""
    if not isinstance(declared, PersonSystem):
        raise TypeError(f"{name}: given the whole [person] scope, not [person.systems.{name}]")
    return declared


def require_whole_scope(declared: PersonDeclaration, name: str) -> PersonScope:
    """The system holding the person table is given the whole [person] scope."""
    if not isinstance(declared, PersonScope):
        raise TypeError(f"{name}: given [person.systems.{name}], not the whole [person] scope")
    return declared


class Capability(StrEnum):
    """What a plug-in can do, each a method (or protocol) its class implements."""

    EXPORT = "export"  # the client's data comes from here (`export`, a source of the bundle)
    DESTROY = "destroy"  # `destroy`: removes every copy of the tenant's data here
    VERIFY = "verify"  # `verify`: an independent re-scan that counts what is left
    ISOLATION = "isolation check"  # `IsolationCheck`, asked before any system is destroyed
    LINGERING = "lingering copies"  # `Lingering`: copies that outlive destruction, dated
    PERSON_ACCESS = "person access"  # finds and exports one person's items
    PERSON_ERASURE = "person erasure"  # erases one person's items, a colleague's intact
    RETENTION = "retention rules"  # `RetentionRules`: the client's periods, run daily


# The method (or protocol) each capability stands for: a registration that declares one its
# class lacks is refused when the package is imported.
_IMPLEMENTED_BY: dict[Capability, tuple[str, ...]] = {
    Capability.EXPORT: ("export",),
    Capability.DESTROY: ("destroy",),
    Capability.VERIFY: ("verify",),
    Capability.ISOLATION: ("check_isolation",),
    Capability.LINGERING: ("lingering_delay",),
    Capability.PERSON_ACCESS: ("find_person", "export_person"),
    Capability.PERSON_ERASURE: ("find_person", "erase_person"),
    Capability.RETENTION: ("check_retention_rule", "run_retention_rule"),
}


class Stage(IntEnum):
    """Where a plug-in's systems come in the destruction order. Files before rows: rows are the
    index of the files, so a crash never orphans a file. Caches after the rows they copy. The
    database's physical backups after the pipeline's own backups: their early expiry needs
    the rows gone from the live database first."""

    FILES = 1
    ROWS = 2
    COPIES = 3
    BACKUPS = 4


@dataclass(frozen=True)
class Plugin:
    """One kind of platform system, declared once: the data map's `plugin = kind` binds a system
    to it, `config` is the model of its `[systems.<name>]` table, `location` the class built for
    each such system (`location(settings, name, config)`), and what it can do. The data map's
    kinds, the destruction and export orders, the stages that ask for a capability and the
    capability table of docs/architecture.md all come from the registrations."""

    kind: str
    config: type[BaseModel]
    location: type[Any]
    capabilities: frozenset[Capability]
    stage: Stage
    summary: str  # one line for the docs: what the plug-in reaches and how it destroys
    export_rank: int | None = None  # a source of the bundle: read in this order, lowest first
    # How the data map tells the plug-in where a person is: [person.systems.<name>] tables (a
    # database) or key patterns (a cache), or the whole [person] scope (the system holding the
    # person table); for a plug-in that erases a person.
    person_by: Literal["tables", "patterns", "scope"] | None = None

    def __post_init__(self) -> None:
        declared_plugin = self.config.model_fields.get("plugin")
        if declared_plugin is None or get_args(declared_plugin.annotation) != (self.kind,):
            raise TypeError(
                f"plug-in {self.kind!r}: its config model {self.config.__name__} must have "
                f'plugin: Literal["{self.kind}"]'
            )
        if not hasattr(self.location, "reach"):
            raise TypeError(f"plug-in {self.kind!r}: {self.location.__name__} has no reach()")
        for capability in self.capabilities:
            for method in _IMPLEMENTED_BY[capability]:
                if not hasattr(self.location, method):
                    raise TypeError(
                        f"plug-in {self.kind!r} declares {capability.value!r}, but "
                        f"{self.location.__name__} has no {method}()"
                    )
        hidden = [
            capability.value
            for capability in (Capability.ISOLATION, Capability.LINGERING,
                               Capability.PERSON_ACCESS, Capability.PERSON_ERASURE,
                               Capability.RETENTION)
            if capability not in self.capabilities
            and hasattr(self.location, _IMPLEMENTED_BY[capability][-1])
        ]  # fmt: skip
        if hidden:
            raise TypeError(
                f"plug-in {self.kind!r}: {self.location.__name__} implements "
                f"{', '.join(hidden)} without declaring it: declare it, or the pipeline never "
                "asks for it"
            )
        if (self.person_by is not None) != (Capability.PERSON_ERASURE in self.capabilities):
            raise TypeError(
                f"plug-in {self.kind!r}: a plug-in that erases a person says how the data map "
                "declares one (person_by), and only such a plug-in does"
            )
        if (self.export_rank is not None) != (Capability.EXPORT in self.capabilities):
            raise TypeError(
                f"plug-in {self.kind!r}: a source of the bundle declares 'export' and an "
                "export_rank, and only a source does"
            )


class CopiesOnly:
    """For a location whose data the client does not receive from it (bundles, backups, keys,
    scratch, the orchestrator): they hold copies of what the export reads at the source, or
    nothing of the client's. Its export contributes no part."""

    def export(
        self,
        case: CaseRef,
        inventory: LocationInventory,
        scratch: Path,
        progress: ExportProgress | None = None,
    ) -> LocationExport:
        return LocationExport(parts=[])


def foreign_key_schemas(table: CatalogTable) -> list[ForeignKeySchema]:
    """A table's foreign keys as the inventory and the manifest give them to the client."""
    return [
        ForeignKeySchema(
            columns=list(fk.columns),
            references=fk.references,
            referenced_columns=list(fk.referenced_columns),
        )
        for fk in table.foreign_keys
    ]


def scratch_dir(settings: Settings, case: CaseRef) -> Path:
    """The case's worker scratch space: the only local disk that ever holds its data."""
    return settings.scratch_root / case.tenant / case.case_id


def write_case_report(settings: Settings, case: CaseRef, name: str, lines: list[str]) -> Path:
    """Details an operator needs that may name tenant data (object keys are file names):
    kept in the case's scratch space on the worker, never in an error that reaches Prefect."""
    path = scratch_dir(settings, case) / "reports" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path
