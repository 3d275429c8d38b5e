"""Where tenant data lives: one module per kind of place, all behind `DataLocation`.

To add a kind: write a module with a class that has the five methods of `DataLocation`, add
a member to `LocationKind` and an entry to `_LOCATIONS`. Nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
from offboarding.locations.backups import BackupsLocation
from offboarding.locations.base import DataLocation, LocationExport, Remaining, Removal, scratch_dir
from offboarding.locations.bundles import BundlesLocation
from offboarding.locations.keys import KeysLocation
from offboarding.locations.objects import FilesLocation
from offboarding.locations.orchestrator import OrchestratorLocation
from offboarding.locations.postgres import PostgresLocation
from offboarding.locations.scratch import ScratchLocation

__all__ = [
    "DESTRUCTION_ORDER",
    "EXPORT_ORDER",
    "DataLocation",
    "LocationExport",
    "LocationKind",
    "Remaining",
    "Removal",
    "get_location",
    "scratch_dir",
]


class LocationKind(StrEnum):
    POSTGRES = "postgres"
    FILES = "files"
    BUNDLES = "bundles"
    BACKUPS = "backups"
    KEYS = "keys"
    SCRATCH = "scratch"
    ORCHESTRATOR = "orchestrator"


_LOCATIONS: dict[LocationKind, Callable[[Settings], DataLocation]] = {
    LocationKind.POSTGRES: PostgresLocation,
    LocationKind.FILES: FilesLocation,
    LocationKind.BUNDLES: BundlesLocation,
    LocationKind.BACKUPS: BackupsLocation,
    LocationKind.KEYS: KeysLocation,
    LocationKind.SCRATCH: ScratchLocation,
    LocationKind.ORCHESTRATOR: OrchestratorLocation,
}

# What the client receives comes from these; the others only hold copies.
EXPORT_ORDER = (LocationKind.POSTGRES, LocationKind.FILES)
# Files before rows: rows are the index of the files, so a crash never orphans a file.
# Backups are deleted everywhere, then the key that seals them is destroyed (crypto-shredding
# covers any copy deletion could not reach).
DESTRUCTION_ORDER = (
    LocationKind.BUNDLES,
    LocationKind.FILES,
    LocationKind.POSTGRES,
    LocationKind.BACKUPS,
    LocationKind.KEYS,
    LocationKind.SCRATCH,
    LocationKind.ORCHESTRATOR,  # checked, never written: Prefect holds no tenant data
)


def get_location(name: str, settings: Settings) -> DataLocation:
    try:
        kind = LocationKind(name)
    except ValueError:
        known = ", ".join(k.value for k in LocationKind)
        raise ConfigurationError(
            f"unknown data location {name!r}: known locations are {known}. To add one, "
            "implement DataLocation and register it in offboarding/locations/__init__.py"
        ) from None
    return _LOCATIONS[kind](settings)
