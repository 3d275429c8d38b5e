"""Where tenant data lives: one module per kind of place, all behind `DataLocation`.

The pipeline's own places (bundles, backups, keys, scratch, the orchestrator) are always
there; the platform's systems come from the data map (offboarding/datamap/), each bound to
a plug-in. A plug-in is one module with a class implementing `DataLocation` (base.py) and its
registration, `PLUGIN = Plugin(...)`: its data map model, what it can do (`Capability`), its
stage in the destruction order and, for a source of the bundle, its export rank. `PLUGINS`
below lists the registrations; the orders, the stages that ask for a capability and the
docs' capability table are read from them. docs/architecture.md walks through adding one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.core.records import ResidueDue
from offboarding.datamap import DEFAULT_DATAMAP, DataMap, datamap_of
from offboarding.locations import cache, mariadb, objects, pgbackrest, postgres
from offboarding.locations.backups import BackupsLocation
from offboarding.locations.base import (
    Capability,
    DataLocation,
    IsolationCheck,
    Lingering,
    LocationExport,
    LocationFacts,
    Plugin,
    Remaining,
    Removal,
    Residual,
    Stage,
    scratch_dir,
)
from offboarding.locations.bundles import BundlesLocation
from offboarding.locations.keys import KeysLocation
from offboarding.locations.orchestrator import OrchestratorLocation
from offboarding.locations.scratch import ScratchLocation

__all__ = [
    "DEFAULT_ORDER",
    "PIPELINE_LOCATIONS",
    "PLUGINS",
    "Capability",
    "DataLocation",
    "LocationExport",
    "LocationFacts",
    "Plugin",
    "Registered",
    "Remaining",
    "Removal",
    "capable",
    "destruction_order",
    "export_order",
    "get_location",
    "isolation_check",
    "lingering",
    "physical_residue",
    "platform_order",
    "plugin_of",
    "registered",
    "scratch_dir",
]

# Every plug-in, by registration; within a stage of the destruction order, in this order.
PLUGINS: tuple[Plugin, ...] = (
    objects.PLUGIN,
    postgres.PLUGIN,
    mariadb.PLUGIN,
    cache.PLUGIN,
    pgbackrest.PLUGIN,
)
_BY_KIND = {plugin.kind: plugin for plugin in PLUGINS}


@dataclass(frozen=True)
class Registered:
    name: str
    make: Callable[[Settings], DataLocation]
    export_rank: int | None = None  # the client's data comes from here, in this order
    plugin: Plugin | None = None  # None for the pipeline's own places


# The pipeline's own places, around the platform's systems of the data map. In destruction
# order: bundles first; then the platform's systems by stage (files, rows, caches); then
# backups, deleted everywhere before the key that seals them is destroyed (crypto-shredding
# covers any copy deletion could not reach), with the platform's physical backups right after
# them; the orchestrator is checked, never written: Prefect holds no tenant data.
_BEFORE = (Registered("bundles", BundlesLocation),)
_AFTER = (
    Registered("keys", KeysLocation),
    Registered("scratch", ScratchLocation),
    Registered("orchestrator", OrchestratorLocation),
)
_PIPELINE_BACKUPS = Registered("backups", BackupsLocation)
PIPELINE_LOCATIONS = frozenset(e.name for e in (*_BEFORE, _PIPELINE_BACKUPS, *_AFTER))


def plugin_of(kind: str) -> Plugin:
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ConfigurationError(
            f"no plug-in {kind!r}: the plug-ins are {', '.join(_BY_KIND)}"
        ) from None


def _maker(plugin: Plugin, name: str, system: object) -> Callable[[Settings], DataLocation]:
    return lambda settings: plugin.location(settings, name, system)


def registered(datamap: DataMap) -> tuple[Registered, ...]:
    """Every location of a platform with this data map, in destruction order."""
    bound = datamap.bound()
    collisions = sorted(set(bound) & PIPELINE_LOCATIONS)
    if collisions:
        raise ConfigurationError(
            f"data map {datamap.source}: {', '.join(collisions)} name(s) the pipeline's own "
            "locations: rename the system(s)"
        )
    platform = [
        Registered(name, _maker(plugin, name, system), plugin.export_rank, plugin)
        for stage in Stage
        for plugin in PLUGINS
        if plugin.stage == stage
        for name, system in bound.items()
        if system.plugin == plugin.kind
    ]
    rows = [e for e in platform if e.plugin and e.plugin.stage < Stage.BACKUPS]
    physical = [e for e in platform if e.plugin and e.plugin.stage == Stage.BACKUPS]
    return (*_BEFORE, *rows, _PIPELINE_BACKUPS, *physical, *_AFTER)


def _registered(settings: Settings) -> tuple[Registered, ...]:
    return registered(datamap_of(settings))


def destruction_order(settings: Settings) -> tuple[str, ...]:
    return tuple(entry.name for entry in _registered(settings))


def export_order(settings: Settings) -> tuple[str, ...]:
    ranked = [e for e in _registered(settings) if e.export_rank is not None]
    return tuple(e.name for e in sorted(ranked, key=lambda e: e.export_rank or 0))


def platform_order(settings: Settings) -> tuple[str, ...]:
    """The platform's systems bound to a plug-in, those the export reads first: what the
    inventory counts."""
    exported = export_order(settings)
    others = [
        e.name
        for e in _registered(settings)
        if e.name not in PIPELINE_LOCATIONS and e.name not in exported
    ]
    return (*exported, *others)


def capable(settings: Settings, capability: Capability) -> tuple[str, ...]:
    """The platform's systems whose plug-in declares `capability`, in destruction order."""
    return tuple(
        e.name
        for e in _registered(settings)
        if e.plugin is not None and capability in e.plugin.capabilities
    )


# The locations of a platform described by the default data map (the settings' database and
# files store): what the first release knew.
DEFAULT_ORDER: tuple[str, ...] = tuple(entry.name for entry in registered(DEFAULT_DATAMAP))


def lingering(settings: Settings) -> tuple[timedelta, str]:
    """How long after destruction the last copy may live, and the settings that make it so:
    planning starts destruction this much earlier (and refuses a case it cannot fit)."""
    candidates = [
        (settings.keyring.destroy_delay, "OFFBOARD_KEY_DESTROY_DELAY"),
        (settings.stores.soft_delete_retention, "OFFBOARD_SOFT_DELETE_RETENTION"),
    ]
    for name in capable(settings, Capability.RESIDUE):  # deleted bytes stay until a rewrite
        candidates.append((settings.destruction.compaction_interval,
                           "OFFBOARD_COMPACTION_INTERVAL (the tables' pages)"))  # fmt: skip
        location = get_location(name, settings)
        if not isinstance(location, Residual):  # pragma: no cover - checked at registration
            raise TypeError(f"{name}: its plug-in declares residue it cannot date")
        candidates += [(s.lingers, f"{name}: {s.ends}") for s in location.residue_sites()
                       if not s.rewritten and s.lingers is not None]  # fmt: skip
    for name in capable(settings, Capability.LINGERING):
        location = get_location(name, settings)
        if not isinstance(location, Lingering):  # pragma: no cover - checked at registration
            raise TypeError(f"{name}: its plug-in declares lingering copies it cannot date")
        candidates.append(location.lingering_delay())
    return max(candidates, key=lambda candidate: candidate[0])


def physical_residue(settings: Settings, at: datetime) -> list[ResidueDue]:
    """Where each system that keeps deleted bytes keeps them, after a logical deletion at
    `at`, and by when: the compact flow's next run for the places it rewrites, the system's
    own bound (a binary log's expiry) for the places that linger, or no date (a log that
    wraps as the server writes)."""
    by = at + settings.destruction.compaction_interval
    found = []
    for name in capable(settings, Capability.RESIDUE):
        location = get_location(name, settings)
        if not isinstance(location, Residual):  # pragma: no cover - checked at registration
            raise TypeError(f"{name}: its plug-in declares residue it cannot date")
        for site in location.residue_sites():
            until = by if site.rewritten else (at + site.lingers if site.lingers else None)
            found.append(ResidueDue(system=name, place=site.place, until=until, ends=site.ends))
    return found


def isolation_check(settings: Settings, name: str) -> IsolationCheck:
    """The system `name`, whose plug-in declares the isolation check."""
    location = get_location(name, settings)
    if not isinstance(location, IsolationCheck):  # pragma: no cover - checked at registration
        raise TypeError(f"{name}: its plug-in declares an isolation check it lacks")
    return location


def get_location(name: str, settings: Settings) -> DataLocation:
    entries = _registered(settings)
    entry = next((e for e in entries if e.name == str(name)), None)
    if entry is None:
        raise ConfigurationError(
            f"unknown data location {name!r}: this platform's are "
            f"{', '.join(e.name for e in entries)}. A system of the platform is added in the "
            "data map (OFFBOARD_DATAMAP); a new kind of system is a plug-in: implement "
            "DataLocation (offboarding/locations/base.py) in a module of its own, register it "
            "there (PLUGIN) and list it in PLUGINS (offboarding/locations/__init__.py)"
        )
    return entry.make(settings)
