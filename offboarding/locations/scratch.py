"""Worker scratch space: Parquet parts and the bundle before delivery. Wiped after delivery,
and checked again at destruction."""

from __future__ import annotations

import hashlib
import shutil
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

__all__ = ["ScratchLocation"]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class ScratchLocation(CopiesOnly):
    name = "scratch"

    def __init__(self, settings: Settings) -> None:
        self.root = settings.scratch_root

    def describe(self) -> LocationFacts:
        return LocationFacts(
            media=f"worker scratch space {self.root}",
            method="clear",
            technique="remove the tenant's scratch directory",
            verification_method="listing of the tenant's scratch directory on the worker",
        )

    def _tenant_dir(self, case: CaseRef) -> Path:
        return self.root / case.tenant

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        files = _files(self._tenant_dir(case))
        return LocationInventory(
            location=self.name, items=len(files), bytes=sum(f.stat().st_size for f in files)
        )

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        files = _files(self._tenant_dir(case))
        size = sum(f.stat().st_size for f in files)
        shutil.rmtree(self._tenant_dir(case), ignore_errors=True)
        return Removal(
            items_before=len(files),
            bytes_before=size,
            items_removed=len(files) - len(_files(self._tenant_dir(case))),
            technique=self.describe().technique,
        )

    def verify(self, case: CaseRef) -> Remaining:
        present = self._tenant_dir(case).exists()
        return Remaining(
            items=len(_files(self._tenant_dir(case))) + int(present),
            verification=f"{self._tenant_dir(case)} {'present' if present else 'absent'}",
        )

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        others = sorted(
            str(p.relative_to(self.root))
            for d in (self.root.iterdir() if self.root.exists() else [])
            if d.name != case.tenant and d.name not in excluded
            for p in _files(d)
        )
        return hashlib.sha256("\n".join(others).encode()).hexdigest()
