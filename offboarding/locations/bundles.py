"""Export bundles delivered to the client: destroyed with everything else once acknowledged.

A bundle lives in the delivery store of the tenant's region; destruction and verification cover
every configured delivery store, so a region moved since delivery cannot hide a copy."""

from __future__ import annotations

import hashlib
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
        self.stores: list[ObjectStore] = [open_store(u) for u in settings.delivery_store_urls()]

    def inventory(self, case: CaseRef) -> LocationInventory:
        prefix = bundle_prefix(case.tenant)
        objects = [o for store in self.stores for o in store.list_objects(prefix)]
        return LocationInventory(
            location=self.name, items=len(objects), bytes=sum(o.size for o in objects)
        )

    def export(self, case: CaseRef, inventory: LocationInventory, scratch: Path) -> LocationExport:
        return LocationExport(parts=[])  # bundles are the export's output, not its input

    def destroy(self, case: CaseRef) -> Removal:
        removals = [
            delete_prefix(
                store,
                bundle_prefix(case.tenant),
                "delete every bundle of the tenant; its links then answer 'gone'",
            )
            for store in self.stores
        ]
        return Removal(
            items_before=sum(r.items_before for r in removals),
            bytes_before=sum(r.bytes_before for r in removals),
            items_removed=sum(r.items_removed for r in removals),
            technique=removals[0].technique,
        )

    def verify(self, case: CaseRef) -> Remaining:
        counts = [count_prefix(store, bundle_prefix(case.tenant)) for store in self.stores]
        pending = [c.pending_until for c in counts if c.pending_until]
        return Remaining(
            items=sum(c.items for c in counts),
            pending_until=max(pending) if pending else None,
            verification="; ".join(
                f"{s.url}: {c.verification}" for s, c in zip(self.stores, counts, strict=True)
            ),
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        return hashlib.sha256(
            "".join(
                digest_outside_prefix(store, BUNDLES_ROOT, bundle_prefix(case.tenant), excluded)
                for store in self.stores
            ).encode()
        ).hexdigest()
