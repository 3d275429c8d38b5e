"""Where tenant data lives: one module per kind of place, all behind `DataLocation`.

To add a kind: write a module with a class that implements `DataLocation` (base.py: it
describes itself and has inventory, export, destroy, verify, neighbours_digest), then add one
`Registered(...)` line to `REGISTERED` below, at its place in the destruction order.
docs/architecture.md walks through an example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError
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
from offboarding.locations.keys import KeysLocation
from offboarding.locations.objects import FilesLocation
from offboarding.locations.orchestrator import OrchestratorLocation
from offboarding.locations.postgres import PostgresLocation
from offboarding.locations.scratch import ScratchLocation

__all__ = [
    "DESTRUCTION_ORDER",
    "EXPORT_ORDER",
    "REGISTERED",
    "DataLocation",
    "LocationExport",
    "LocationFacts",
    "Registered",
    "Remaining",
    "Removal",
    "get_location",
    "scratch_dir",
]


@dataclass(frozen=True)
class Registered:
    name: str
    make: Callable[[Settings], DataLocation]
    export_rank: int | None = None  # the client's data comes from here, in this order


# In destruction order. Files before rows: rows are the index of the files, so a crash never
# orphans a file. Backups are deleted everywhere, then the key that seals them is destroyed
# (crypto-shredding covers any copy deletion could not reach). The orchestrator is checked,
# never written: Prefect holds no tenant data. Export: the database first (its snapshot time
# is the bundle's), then the files its rows reference.
REGISTERED: tuple[Registered, ...] = (
    Registered("bundles", BundlesLocation),
    Registered("files", FilesLocation, export_rank=2),
    Registered("postgres", PostgresLocation, export_rank=1),
    Registered("backups", BackupsLocation),
    Registered("keys", KeysLocation),
    Registered("scratch", ScratchLocation),
    Registered("orchestrator", OrchestratorLocation),
)

DESTRUCTION_ORDER: tuple[str, ...] = tuple(entry.name for entry in REGISTERED)
EXPORT_ORDER: tuple[str, ...] = tuple(
    entry.name
    for entry in sorted(
        (e for e in REGISTERED if e.export_rank is not None), key=lambda e: e.export_rank or 0
    )
)
_BY_NAME = {entry.name: entry for entry in REGISTERED}
if len(_BY_NAME) != len(REGISTERED):  # pragma: no cover - a mistake in the table above
    raise ConfigurationError("two data locations are registered under one name")


def get_location(name: str, settings: Settings) -> DataLocation:
    entry = _BY_NAME.get(str(name))
    if entry is None:
        raise ConfigurationError(
            f"unknown data location {name!r}: known locations are {', '.join(DESTRUCTION_ORDER)}. "
            "To add one, implement DataLocation (offboarding/locations/base.py) in a module of "
            "its own and add one Registered(...) line to offboarding/locations/__init__.py"
        )
    return entry.make(settings)
