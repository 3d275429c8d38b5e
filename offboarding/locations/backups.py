"""The platform's backups of a tenant, in every backup location (clause 2.3.8: several, all
encrypted). Destruction deletes them everywhere; the keys location then crypto-shreds the
tenant's data key, so a copy this step could not reach stays unreadable."""

from __future__ import annotations

from collections.abc import Mapping

from offboarding.core.config import Settings, validate_tenant_id
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

__all__ = ["BACKUPS_ROOT", "BackupsLocation", "backup_prefix"]

BACKUPS_ROOT = "backups/"


def backup_prefix(tenant: str) -> str:
    return f"{BACKUPS_ROOT}{validate_tenant_id(tenant)}/"


class BackupsLocation(CopiesOnly):
    name = "backups"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stores: list[ObjectStore] = [open_store(u) for u in settings.backup_store_urls()]

    def describe(self) -> LocationFacts:
        retention = self.settings.stores.soft_delete_retention
        return LocationFacts(
            media="backup locations " + ", ".join(s.url for s in self.stores),
            method="clear",
            technique=f"delete every backup of the tenant in all {len(self.stores)} backup "
            "locations (each encrypted with the tenant's data key, destroyed next)",
            verification_method="listing of the tenant's backup prefix in every backup location",
            versioned=any(keeps_generations(s) for s in self.stores),
            lingering=f"soft-deleted copies for up to {retention}" if retention else "",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        objects = [o for s in self.stores for o in s.list_objects(backup_prefix(case.tenant))]
        return LocationInventory(
            location=self.name, items=len(objects), bytes=sum(o.size for o in objects)
        )

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        return delete_in_stores(
            self.stores, backup_prefix(case.tenant), "", summary=self.describe().technique
        )

    def verify(self, case: CaseRef) -> Remaining:
        return count_in_stores(self.stores, backup_prefix(case.tenant))

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        return digest_outside_in_stores(
            self.stores, BACKUPS_ROOT, backup_prefix(case.tenant), excluded
        )
