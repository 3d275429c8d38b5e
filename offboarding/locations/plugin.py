"""What a plug-in can do beyond the four verbs, declared once in its registration.

Each `Capability` is a method (or a protocol below) its class implements: the isolation check
asked before any system is destroyed, the lingering copies planning waits for, finding,
exporting and erasing one person, the client's retention rules. `Plugin` is the registration:
the data map's model of the kind, the class, what it can do, where it comes in the
destruction and export orders. offboarding/locations/__init__.py lists the registrations and
reads everything else from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel

from offboarding.core.records import CaseRef, ExportedPart, FileItem, TableItem
from offboarding.datamap import PersonDeclaration, PersonScope, PersonSystem

__all__ = [
    "Canary",
    "Capability",
    "IsolationCheck",
    "KeptLink",
    "Lingering",
    "PersonAccess",
    "PersonErased",
    "PersonErasure",
    "PersonExport",
    "PersonItems",
    "Plugin",
    "Reachable",
    "Residual",
    "Residue",
    "ResidueSite",
    "RetentionRules",
    "RuleOutcome",
    "Stage",
    "quiet",
    "require_system_declaration",
    "require_whole_scope",
]


def quiet(_: str) -> None:
    """Tells no one (the default for `say`)."""


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
class Canary:
    """A value sampled from the tenant's rows, and the column it came from (so a copy a live
    row still holds can be told from residue)."""

    value: bytes
    table: str
    column: str
    binary: bool  # a bytea column (else text, read as UTF-8)


@dataclass(frozen=True)
class ResidueSite:
    """One kind of physical place where a system keeps deleted bytes: what ends it, and whether
    the compaction rewrites it (then its scan must find nothing) or it lingers (a log that
    wraps or expires), for how long when the system says."""

    place: str
    ends: str
    rewritten: bool
    method: str  # how the compaction clears it and the scan reads it
    lingers: timedelta | None = None  # for a place not rewritten: its bound, when known


@dataclass
class Residue:
    """What a scan found: per canary (by its index in the sample) the files holding it."""

    canaries: int
    files: int = 0
    bytes: int = 0
    found: dict[int, list[str]] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)  # found, but a live row holds them too
    # Why the bytes read cannot show a canary (files encrypted at rest): nothing is proven.
    unreadable: str = ""

    @property
    def holding(self) -> int:
        """How many canaries were found at least once."""
        return len(self.found)

    def summary(self) -> str:
        return (
            f"{self.holding} of {self.canaries} canaries in {self.files} files ({self.bytes} bytes)"
        )


@dataclass(frozen=True)
class PersonItems:
    """One person's items in a system, counted, never their values: per table (or key
    pattern) the rows (or keys), and their bytes."""

    counts: dict[str, int]
    sizes: dict[str, int]  # bytes per table or pattern (estimated for rows)
    objects: int = 0  # objects of the files store its rows name, going with them
    object_bytes: int = 0
    links: dict[str, int] = field(default_factory=dict)  # table.column -> others' rows
    refusals: list[str] = field(default_factory=list)  # what an erasure would refuse, and why

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
    links: list[KeptLink] = field(default_factory=list)  # others' rows pointing at the person


@dataclass(frozen=True)
class KeptLink:
    """A column of kept rows that pointed at the erased person, and what became of it: cleared,
    reassigned to the tombstone person, or kept (still linkable, with why)."""

    table: str
    column: str
    rule: str  # clear | tombstone | keep
    rows: int
    why: str = ""


@runtime_checkable
class Residual(Protocol):
    """A system whose deleted bytes outlive the deletion on its own disk (pages, logs,
    snapshots) until a rewrite: what the tenant's canaries are, the rewrite, and the scan."""

    def residue_sites(self) -> list[ResidueSite]:
        """The physical places that can keep deleted bytes, each with what ends it."""
        ...

    def canaries(self, case: CaseRef) -> list[Canary]:
        """Values sampled from the tenant's data, to look for in the files later."""
        ...

    def compact(self, places: list[str]) -> list[str]:
        """Rewrite these places (every touched table the run knows, of every system: each
        plug-in takes its own) so deleted bytes leave the files; the ones done."""
        ...

    def scan_residue(self, places: list[str], canaries: list[Canary]) -> dict[str, Residue]:
        """The canaries looked for in the files of each kind of physical place."""
        ...


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
    RESIDUE = "physical residue"  # `Residual`: canaries, compaction, the scan of the files


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
    Capability.RESIDUE: ("residue_sites", "canaries", "compact", "scan_residue"),
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
