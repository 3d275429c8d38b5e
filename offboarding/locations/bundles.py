"""Export bundles delivered to the client: destroyed with everything else once acknowledged.

A bundle lives in the delivery store of the tenant's region; destruction and verification cover
every configured delivery store, so a region moved since delivery cannot hide a copy."""

from __future__ import annotations

from collections.abc import Mapping

from offboarding.core.config import Settings
from offboarding.core.records import CaseRef, LocationInventory
from offboarding.locations.base import (
    CopiesOnly,
    LocationFacts,
    Remaining,
    Removal,
)
from offboarding.locations.prefixed import (
    count_in_stores,
    delete_in_stores,
    digest_outside_in_stores,
)
from offboarding.stores import ObjectStore, keeps_generations, open_store

__all__ = ["BundlesLocation", "bundle_prefix", "staging_prefix"]

BUNDLES_ROOT = "bundles/"


def bundle_prefix(tenant: str) -> str:
    return f"{BUNDLES_ROOT}{tenant}/"


def staging_prefix(case: CaseRef) -> str:
    """Where a distributed export's workers put the case's parts until they are packaged:
    beside the bundle, in the delivery store of the tenant's region, so destruction of the
    bundles covers a staging area a crash left behind."""
    return f"{bundle_prefix(case.tenant)}{case.case_id}/staging/"


class BundlesLocation(CopiesOnly):
    name = "bundles"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stores: list[ObjectStore] = [open_store(u) for u in settings.delivery_store_urls()]

    def describe(self) -> LocationFacts:
        retention = self.settings.stores.soft_delete_retention
        return LocationFacts(
            media="delivery stores " + ", ".join(s.url for s in self.stores),
            method="clear",
            technique="delete every bundle of the tenant; its links then answer 'gone'",
            verification_method="listing of the tenant's bundle prefix in every delivery store",
            versioned=any(keeps_generations(s) for s in self.stores),
            lingering=f"soft-deleted copies for up to {retention}" if retention else "",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        prefix = bundle_prefix(case.tenant)
        objects = [o for store in self.stores for o in store.list_objects(prefix)]
        return LocationInventory(
            location=self.name, items=len(objects), bytes=sum(o.size for o in objects)
        )

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        return delete_in_stores(self.stores, bundle_prefix(case.tenant), self.describe().technique)

    def verify(self, case: CaseRef) -> Remaining:
        return count_in_stores(self.stores, bundle_prefix(case.tenant))

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        return digest_outside_in_stores(
            self.stores, BUNDLES_ROOT, bundle_prefix(case.tenant), excluded
        )
