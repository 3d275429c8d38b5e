"""Export bundles delivered to the client: destroyed with everything else once acknowledged."""

from __future__ import annotations

from pathlib import Path

from offboarding.config import Settings
from offboarding.locations.base import LocationExport, Remaining, Removal
from offboarding.locations.prefixed import count_prefix, delete_prefix, digest_outside_prefix
from offboarding.records import CaseRef, LocationInventory
from offboarding.store import ObjectStore, open_store

__all__ = ["BundlesLocation", "bundle_prefix"]

BUNDLES_ROOT = "bundles/"


def bundle_prefix(tenant: str) -> str:
    return f"{BUNDLES_ROOT}{tenant}/"


class BundlesLocation:
    name = "bundles"

    def __init__(self, settings: Settings) -> None:
        self.store: ObjectStore = open_store(settings.store_url("delivery"))

    def inventory(self, case: CaseRef) -> LocationInventory:
        objects = list(self.store.list_objects(bundle_prefix(case.tenant)))
        return LocationInventory(
            location=self.name, items=len(objects), bytes=sum(o.size for o in objects)
        )

    def export(self, case: CaseRef, inventory: LocationInventory, scratch: Path) -> LocationExport:
        return LocationExport(parts=[])  # bundles are the export's output, not its input

    def destroy(self, case: CaseRef) -> Removal:
        return delete_prefix(
            self.store,
            bundle_prefix(case.tenant),
            "delete every bundle of the tenant; its links then answer 'gone'",
        )

    def verify(self, case: CaseRef) -> Remaining:
        return count_prefix(self.store, bundle_prefix(case.tenant))

    def neighbours_digest(self, case: CaseRef) -> str:
        return digest_outside_prefix(self.store, BUNDLES_ROOT, bundle_prefix(case.tenant))
