"""Object storage: the tenant's uploaded files under `tenants/{tenant}/`, plus every object
a tenant row references. Files go into the bundle as their original bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from exporters.bundle import safe_entry_paths
from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IsolationBreachError,
    MissingDataError,
    SharedRowsError,
)
from offboarding.core.records import CaseRef, ExportedPart, FileItem, LocationInventory
from offboarding.datamap import FilesSystem
from offboarding.locations.base import (
    Capability,
    ExportProgress,
    LocationExport,
    LocationFacts,
    Plugin,
    Remaining,
    Removal,
    Stage,
    write_case_report,
)
from offboarding.locations.postgres import PostgresLocation
from offboarding.locations.prefixed import (
    TENANTS_ROOT,
    count_prefix,
    delete_prefix,
    digest_object,
    digest_outside_prefix,
    tenant_prefix,
)
from offboarding.stores import ObjectStore, keeps_generations, open_store

__all__ = ["PLUGIN", "FilesLocation", "digest_object", "tenant_prefix"]


class FilesLocation:
    name = "files"

    def __init__(
        self, settings: Settings, name: str = "files", system: FilesSystem | None = None
    ) -> None:
        self.settings = settings
        self.store: ObjectStore = open_store(settings.store_url("files"))
        template = (system or FilesSystem(plugin="files")).prefix
        self.template: str | None = template or None

    def _prefix(self, tenant: str) -> str | None:
        """The tenant's folder (None where the product keeps none: its rows name its objects)."""
        return self.template.format(tenant=tenant) if self.template else None

    @property
    def _root(self) -> str:
        """What every tenant's folder starts with."""
        return self.template.split("{tenant}", 1)[0] if self.template else ""

    def _owner(self, key: str) -> str | None:
        """The tenant whose folder holds `key`, if any."""
        if not self.template:
            return None
        before, after = self.template.split("{tenant}", 1)
        if not key.startswith(before):
            return None
        # Ids hold no '/': the id is the first segment after `before`, less the template's
        # text between {tenant} and its next '/'.
        head = after.split("/", 1)[0]
        segment = key[len(before) :].split("/", 1)[0]
        tenant = segment[: len(segment) - len(head)] if segment.endswith(head) else ""
        return tenant if tenant and key.startswith(before + tenant + after) else None

    def describe(self) -> LocationFacts:
        retention = self.settings.stores.soft_delete_retention
        return LocationFacts(
            media=f"object store {self.settings.store_url('files')}",
            method="clear",
            technique="delete every object under the tenant prefix, and each object outside "
            "it that only the tenant's rows reference",
            verification_method="listing of the tenant's prefix (with trailing '/') in the "
            "files store",
            versioned=keeps_generations(self.store),
            lingering=f"soft-deleted copies for up to {retention}" if retention else "",
        )

    def reach(self) -> str:
        """Reach the store (`offboard datamap check`): one existence probe, no listing."""
        url = self.settings.store_url("files")
        if url.startswith("file://"):
            root = Path(url.removeprefix("file://"))
            if not root.is_dir():
                raise ConfigurationError(
                    f"the files store {url} is not a directory: set OFFBOARD_FILES_URL to the "
                    "platform's files store"
                )
        self.store.exists(f"{TENANTS_ROOT}.offboarding-reach-probe")
        return f"object store {url}"

    def _outside(self, case: CaseRef, referenced: set[str]) -> set[str]:
        """Objects the tenant's rows reference outside every tenant's prefix (shared folders,
        legacy paths): the tenant's to export and destroy, unless other rows reference them
        too, which stops the case (their keys go to a report on the worker: file names can
        name people)."""
        outside = {k for k in referenced if self._owner(k) is None}
        shared = PostgresLocation(self.settings).referenced_by_others(case, outside)
        if shared:
            report = write_case_report(self.settings, case, "shared-objects.txt", sorted(shared))
            raise SharedRowsError(
                f"{len(shared)} object(s) outside tenant {case.tenant!r}'s prefix are referenced "
                "by its rows and by rows of other tenants too (keys in "
                f"{report} on the worker): destroying them would take another tenant's file, "
                "keeping them would keep this tenant's. Give each tenant its own copy (or clear "
                "this tenant's reference), then retry"
            )
        return outside

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        prefix = self._prefix(case.tenant)
        listed = {o.key: o for o in self.store.list_objects(prefix)} if prefix else {}
        referenced = PostgresLocation(self.settings).referenced_objects(case)
        self._outside(case, referenced)
        owners_of = {k: self._owner(k) for k in referenced}
        foreign = sorted(k for k, owner in owners_of.items() if owner not in (None, case.tenant))
        if foreign:
            owners = sorted({str(owners_of[key]) for key in foreign})
            raise IsolationBreachError(
                f"rows of tenant {case.tenant!r} reference {len(foreign)} object(s) under another "
                f"tenant's prefix (first: {owners[0]!r}'s): the case stops and an incident is "
                "recorded (clause 2.2.4); correct the references before retrying",
                facts={
                    "nature": "rows of the offboarded tenant reference files stored under other "
                    "tenants' prefixes: exporting them would disclose those tenants' files",
                    "affected_tenants": owners,
                    "categories": ["uploaded files (documents, images)"],
                    "approximate_records": len(foreign),
                    "approximate_people": None,
                },
            )
        items: list[FileItem] = []
        missing: list[str] = []
        for key in sorted(set(listed) | referenced):
            info = listed.get(key)
            if info is None:
                if not self.store.exists(key):
                    missing.append(key)
                    continue
                size, digest = digest_object(self.store, key)
                items.append(FileItem(key=key, size=size, sha256=digest, referenced=True))
            else:
                items.append(
                    FileItem(
                        key=key,
                        size=info.size,
                        sha256=info.sha256,
                        referenced=key in referenced,
                        generation=info.generation,
                    )
                )
        if missing:
            report = write_case_report(self.settings, case, "missing-objects.txt", missing)
            raise MissingDataError(
                f"{len(missing)} object(s) referenced by rows of tenant {case.tenant!r} are "
                f"missing from {self.store.url}; their keys are listed in {report} on the "
                "worker. An export without them would be incomplete: restore them from backup "
                "or correct the rows, then rerun"
            )
        return LocationInventory(
            location=self.name, items=len(items), bytes=sum(i.size for i in items), files=items
        )

    def export(
        self,
        case: CaseRef,
        inventory: LocationInventory,
        scratch: Path,
        progress: ExportProgress | None = None,
    ) -> LocationExport:
        """Name each object as a bundle entry; its bytes stream from the store at packaging."""
        prefix = self._prefix(case.tenant)
        relative = [
            f.key[len(prefix) :] if prefix and f.key.startswith(prefix) else f"_referenced/{f.key}"
            for f in inventory.files
        ]
        paths = safe_entry_paths("files/", relative)
        return LocationExport(
            parts=[
                ExportedPart(
                    path=path, source=f"store:{f.key}", kind="file", size=f.size, sha256=f.sha256
                )
                for f, path in zip(inventory.files, paths, strict=True)
            ]
        )

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        """The tenant's prefix, and the objects outside it that only its rows reference
        (checked again now: the rows are still there, files go before rows)."""
        outside = sorted(
            k
            for k in self._outside(case, PostgresLocation(self.settings).referenced_objects(case))
            if self.store.exists(k)
        )
        size = sum(digest_object(self.store, k)[0] for k in outside)
        removed = sum(self.store.delete(k) for k in outside)
        left = sum(self.store.exists(k) for k in outside)
        if left:
            raise DestructionIncompleteError(
                f"{left} object(s) outside tenant {case.tenant!r}'s prefix are still in "
                f"{self.store.url} after deletion; retry the destruction"
            )
        prefix = self._prefix(case.tenant)
        if prefix is None:
            return Removal(
                items_before=len(outside),
                bytes_before=size,
                items_removed=removed,
                technique="delete each object the tenant's rows name (no folder per tenant)",
                isolation="only objects no other tenant's row names, checked before the first "
                "delete; each checked absent after",
            )
        inside = delete_prefix(self.store, prefix, self.describe().technique)
        if not outside:
            return inside
        return replace(
            inside,
            items_before=inside.items_before + len(outside),
            bytes_before=inside.bytes_before + size,
            items_removed=inside.items_removed + removed,
            details={
                **inside.details,
                "outside the prefix": f"{removed} object(s) only the tenant's rows referenced, "
                "deleted and checked absent",
            },
        )

    def verify(self, case: CaseRef) -> Remaining:
        prefix = self._prefix(case.tenant)
        if prefix is None:
            return Remaining(
                items=0,
                verification="no folder per tenant: each object the tenant's rows named was "
                "checked absent when it was deleted",
            )
        return count_prefix(self.store, prefix)

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        own = self._prefix(case.tenant) or "\0"  # (no key starts with NUL)
        others = frozenset(p for t in excluded if (p := self._prefix(t)))
        return digest_outside_prefix(self.store, self._root, own, others)


PLUGIN = Plugin(
    kind="files",
    config=FilesSystem,
    location=FilesLocation,
    capabilities=frozenset({Capability.EXPORT, Capability.DESTROY, Capability.VERIFY}),
    stage=Stage.FILES,
    export_rank=2,
    summary="the platform's files store (OFFBOARD_FILES_URL): the tenant's prefix, every "
    "generation deleted; the objects its rows name are exported",
)
