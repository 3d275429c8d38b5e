"""Prefect's own result storage. By design it never holds tenant data (tasks return references,
counts and digests), so there is nothing to delete; destruction still scans it, so the
certificate can say so rather than assume it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from offboarding.core.config import Settings
from offboarding.core.records import CaseRef, LocationInventory
from offboarding.locations.base import (
    CopiesOnly,
    LocationFacts,
    Remaining,
    Removal,
)
from offboarding.locations.objects import tenant_prefix
from offboarding.registry import TenantRegistry

__all__ = ["OrchestratorLocation"]

_MAX_SCAN_BYTES = 64 * 1024 * 1024  # result files are small; a huge one is read in part


class OrchestratorLocation(CopiesOnly):
    name = "orchestrator"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _root(self) -> Path:
        if self.settings.orchestrator_results_path is not None:
            return self.settings.orchestrator_results_path.expanduser()
        # Prefect's documented default, read without importing Prefect (the flows set the
        # setting from Prefect's own settings, so this is for direct calls of the library).
        explicit = os.environ.get("PREFECT_RESULTS_LOCAL_STORAGE_PATH")
        if explicit:
            return Path(explicit).expanduser()
        return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser() / "storage"

    def _markers(self, case: CaseRef) -> list[bytes]:
        """What would betray tenant data: the contact's address, and object keys (file names)."""
        contact = TenantRegistry(self.settings).get(case.tenant).contact_email
        return [m.encode() for m in (contact, tenant_prefix(case.tenant)) if m]

    def _hits(self, case: CaseRef) -> tuple[int, int]:
        root = self._root()
        files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
        markers = self._markers(case)
        hits = 0
        for path in files:
            with path.open("rb") as handle:
                content = handle.read(_MAX_SCAN_BYTES)
            hits += any(marker in content for marker in markers)
        return len(files), hits

    def describe(self) -> LocationFacts:
        return LocationFacts(
            media=f"Prefect result storage of the worker ({self._root()})",
            method="clear",
            technique="nothing to remove: the flows pass references, counts and digests only; "
            "Prefect's result storage is scanned at verification",
            verification_method="scan of Prefect's result storage for the tenant's contact "
            "address and object keys",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        return LocationInventory(location=self.name, items=self._hits(case)[1], bytes=0)

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        return Removal(
            items_before=0,
            bytes_before=0,
            items_removed=0,
            technique=self.describe().technique,
        )

    def verify(self, case: CaseRef) -> Remaining:
        scanned, hits = self._hits(case)
        return Remaining(
            items=hits,
            verification=f"scanned {scanned} result files under {self._root()} for the tenant's "
            f"contact address and object keys: {hits} hold any",
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        return "not applicable: holds no tenant data"
