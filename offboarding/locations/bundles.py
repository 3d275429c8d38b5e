"""Export bundles delivered to the client: destroyed with everything else once acknowledged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from offboarding.config import Settings
from offboarding.locations.base import LocationExport, Remaining, Removal
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
        objects = list(self.store.list_objects(bundle_prefix(case.tenant)))
        removed = sum(1 for o in objects if self.store.delete(o.key))
        return Removal(
            items_before=len(objects),
            bytes_before=sum(o.size for o in objects),
            items_removed=removed,
            technique="delete every bundle of the tenant; its links then answer 'gone'",
        )

    def verify(self, case: CaseRef) -> Remaining:
        left = sum(1 for _ in self.store.list_objects(bundle_prefix(case.tenant)))
        return Remaining(
            items=left, verification=f"listing of {bundle_prefix(case.tenant)}: {left} objects"
        )

    def neighbours_digest(self, case: CaseRef) -> str:
        own = bundle_prefix(case.tenant)
        listing = [
            (o.key, o.sha256)
            for o in self.store.list_objects(BUNDLES_ROOT)
            if not o.key.startswith(own)
        ]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
