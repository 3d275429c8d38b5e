"""Where tenant data lives: one module per kind of place, all behind `DataLocation`.

The pipeline's own places (bundles, backups, keys, scratch, the orchestrator) are always
there; the platform's systems come from the data map (offboarding/datamap.py). To add a kind
of system: write a module with a class that implements `DataLocation` (base.py: it describes
itself and has inventory, export, destroy, verify, neighbours_digest), give it a model in the
data map, and place it in `registered` below. docs/architecture.md walks through the Redis
cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.datamap import (
    DEFAULT_DATAMAP,
    DataMap,
    MariaDBSystem,
    PgBackRestSystem,
    RedisSystem,
    load_datamap,
)
from offboarding.locations.backups import BackupsLocation
from offboarding.locations.base import (
    DataLocation,
    LocationExport,
    LocationFacts,
    Remaining,
    Removal,
    scratch_dir,
)
from offboarding.locations.bundles import BundlesLocation
from offboarding.locations.cache import RedisLocation
from offboarding.locations.keys import KeysLocation
from offboarding.locations.mariadb import MariaDBLocation
from offboarding.locations.objects import FilesLocation
from offboarding.locations.orchestrator import OrchestratorLocation
from offboarding.locations.pgbackrest import PgBackRestLocation
from offboarding.locations.postgres import PostgresLocation
from offboarding.locations.scratch import ScratchLocation

__all__ = [
    "DEFAULT_ORDER",
    "PIPELINE_LOCATIONS",
    "DataLocation",
    "LocationExport",
    "LocationFacts",
    "Registered",
    "Remaining",
    "Removal",
    "destruction_order",
    "export_order",
    "get_location",
    "lingering",
    "platform_order",
    "registered",
    "scratch_dir",
]


@dataclass(frozen=True)
class Registered:
    name: str
    make: Callable[[Settings], DataLocation]
    export_rank: int | None = None  # the client's data comes from here, in this order


# The pipeline's own places, around the platform's systems of the data map. In destruction
# order: bundles first; then the platform's systems, files before rows (rows are the index of
# the files, so a crash never orphans a file) and caches after the rows they copy; then
# backups, deleted everywhere before the key that seals them is destroyed (crypto-shredding
# covers any copy deletion could not reach). The orchestrator is checked, never written:
# Prefect holds no tenant data. Export: the database first (its snapshot time is the
# bundle's), then the files its rows reference.
_BEFORE = (Registered("bundles", BundlesLocation),)
_AFTER = (
    Registered("backups", BackupsLocation),
    Registered("keys", KeysLocation),
    Registered("scratch", ScratchLocation),
    Registered("orchestrator", OrchestratorLocation),
)
PIPELINE_LOCATIONS = frozenset(entry.name for entry in (*_BEFORE, *_AFTER))


def _cache(name: str, system: RedisSystem) -> Callable[[Settings], DataLocation]:
    return lambda settings: RedisLocation(settings, name, system)


def _pgbackrest(name: str, system: PgBackRestSystem) -> Callable[[Settings], DataLocation]:
    return lambda settings: PgBackRestLocation(settings, name, system)


def _mariadb(name: str, system: MariaDBSystem) -> Callable[[Settings], DataLocation]:
    return lambda settings: MariaDBLocation(settings, name, system)


def registered(datamap: DataMap) -> tuple[Registered, ...]:
    """Every location of a platform with this data map, in destruction order."""
    bound = datamap.bound()
    collisions = sorted(set(bound) & PIPELINE_LOCATIONS)
    if collisions:
        raise ConfigurationError(
            f"data map {datamap.source}: {', '.join(collisions)} name(s) the pipeline's own "
            "locations: rename the system(s)"
        )
    platform: list[Registered] = []
    if "files" in bound:
        platform.append(Registered("files", FilesLocation, export_rank=2))
    if "postgres" in bound:
        platform.append(Registered("postgres", PostgresLocation, export_rank=1))
    platform += [
        Registered(name, _mariadb(name, system), export_rank=3)
        for name, system in bound.items()
        if isinstance(system, MariaDBSystem)
    ]
    platform += [
        Registered(name, _cache(name, system))
        for name, system in bound.items()
        if isinstance(system, RedisSystem)
    ]
    # The platform's physical backups come after the pipeline's own: their early expiry (if
    # the operator's policy allows it) needs the rows gone from the live database first.
    physical = [
        Registered(name, _pgbackrest(name, system))
        for name, system in bound.items()
        if isinstance(system, PgBackRestSystem)
    ]
    backups, *rest = _AFTER
    return (*_BEFORE, *platform, backups, *physical, *rest)


def _registered(settings: Settings) -> tuple[Registered, ...]:
    return registered(load_datamap(settings.datamap))


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
    for name, system in load_datamap(settings.datamap).bound().items():
        if isinstance(system, PgBackRestSystem):  # only these say when their copies go
            candidates.append(PgBackRestLocation(settings, name, system).lingering_delay())
    return max(candidates, key=lambda candidate: candidate[0])


def get_location(name: str, settings: Settings) -> DataLocation:
    entries = _registered(settings)
    entry = next((e for e in entries if e.name == str(name)), None)
    if entry is None:
        raise ConfigurationError(
            f"unknown data location {name!r}: this platform's are "
            f"{', '.join(e.name for e in entries)}. A system of the platform is added in the "
            "data map (OFFBOARD_DATAMAP); a new kind of system is a plug-in: implement "
            "DataLocation (offboarding/locations/base.py) in a module of its own and bind it in "
            "offboarding/locations/__init__.py and offboarding/datamap.py"
        )
    return entry.make(settings)
