"""The one interface every place tenant data lives implements: it describes itself, and has
the four verbs inventory, export, destroy, verify; plus a digest of the neighbours' data there,
for the opt-in audit mode that compares it before and after destruction.

A plug-in (a kind of platform system the data map binds: PostgreSQL, MariaDB, Redis...) says
what more it can do in its one registration, `Plugin`: each `Capability` it declares is a
protocol its class implements (plugin.py, re-exported here), and the pipeline asks only
plug-ins that declare it (offboarding/locations/__init__.py reads the registrations)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.names import inside
from offboarding.core.records import (
    CaseRef,
    ExportedPart,
    ForeignKeySchema,
    LocationInventory,
)
from offboarding.locations.plugin import (
    Canary,
    Capability,
    IsolationCheck,
    KeptLink,
    Lingering,
    PersonAccess,
    PersonErased,
    PersonErasure,
    PersonExport,
    PersonItems,
    Plugin,
    Reachable,
    Residual,
    Residue,
    ResidueSite,
    RetentionRules,
    RuleOutcome,
    Stage,
    quiet,
    require_system_declaration,
    require_whole_scope,
)
from offboarding.planning import CatalogTable
from offboarding.stores import ObjectStore, sha256_file

__all__ = [
    "Canary",
    "Capability",
    "CopiesOnly",
    "DataLocation",
    "ExportPlan",
    "ExportProgress",
    "FannedOut",
    "IsolationCheck",
    "KeptLink",
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
    "Residual",
    "Residue",
    "ResidueSite",
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
            declared=fk.declared,
            none=list(fk.none),
            when=dict(fk.when),
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
