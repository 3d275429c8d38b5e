"""The stages of an offboarding case up to the acknowledgement, as plain functions.

`flows/offboard.py` wraps each in a Prefect task; here they take settings and a case and
return typed records, so they can be tested and reused without an orchestrator.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import ConfigurationError, IntegrityError, IsolationBreachError
from offboarding.core.records import (
    BundlePart,
    CaseRef,
    ExportedPart,
    ExportResult,
    Inventory,
    StagedRecord,
)
from offboarding.datamap import datamap_of, system_entries
from offboarding.evidence.incidents import check_export_isolation, record_incident
from offboarding.export.canaries import keep_canaries
from offboarding.export.packaging import (
    generations_of,
    package,
    part_opener,
    staging_area,
    verify_package,
)
from offboarding.locations import get_location, platform_order, scratch_dir
from offboarding.locations.base import (
    ExportProgress,
    FannedOut,
    LocationExport,
    PartTask,
    StagingSink,
)
from offboarding.people import statement
from offboarding.registry import TenantRegistry
from offboarding.stores import sha256_file
from offboarding.trail import AuditTrail, events

__all__ = [
    "CopyResult",
    "FanOut",
    "dry_run_inventory",
    "export_copy",
    "export_part",
    "export_snapshot",
    "freeze",
    "generations_of",
    "inventory_of",
    "inventory_rows",
    "new_case",
    "package",
    "part_opener",
    "snapshot_inventory",
    "stage",
    "staging_area",
    "take_inventory",
    "unstage",
    "verify_package",
]


_Staged = TypeVar("_Staged", bound=BaseModel)


def stage(settings: Settings, case: CaseRef, name: str, record: BaseModel) -> StagedRecord:
    """Keep `record` in the case's scratch space; return what may cross the orchestrator."""
    body = record.model_dump_json().encode()
    path = scratch_dir(settings, case) / "records" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    counts = {
        key: value
        for key, value in {
            "tables": len(getattr(record, "tables", [])),
            "files": len(getattr(record, "files", [])),
            "rows": getattr(record, "total_rows", 0),
            "parts": len(getattr(record, "parts", [])),
        }.items()
        if value
    }
    return StagedRecord(path=str(path), sha256=hashlib.sha256(body).hexdigest(), counts=counts)


def unstage(staged: StagedRecord, model: type[_Staged]) -> _Staged:
    body = Path(staged.path).read_bytes()
    if hashlib.sha256(body).hexdigest() != staged.sha256:
        raise IntegrityError(f"{staged.path} changed since it was staged: rerun the case")
    return model.model_validate_json(body)


def new_case(tenant: str, run_id: str) -> CaseRef:
    validate_tenant_id(tenant)
    return CaseRef(tenant=tenant, case_id=f"{tenant}-{run_id.replace('-', '')[:12]}")


def freeze(settings: Settings, case: CaseRef, reason_ref: str = "") -> datetime:
    """Freeze the tenant; `reason_ref` names the termination statement (its reason), if any."""
    if reason_ref:  # refused before anything is frozen: the platform fixes its event
        statement(settings, reason_ref, case.tenant, "termination")
    record = TenantRegistry(settings).freeze(case.tenant, case.case_id)
    assert record.frozen_at is not None
    AuditTrail.open(settings, case).record(
        events.Frozen(
            frozen_at=record.frozen_at, region=record.region, reason_statement=reason_ref or None
        ),
        once="frozen",
    )
    return record.frozen_at


def dry_run_inventory(settings: Settings, tenant: str) -> Inventory:
    """The plan support staff look at before a case: nothing is frozen, exported or recorded,
    and what would stop a case (unclassified tables) is listed instead of stopping."""
    case = CaseRef(tenant=validate_tenant_id(tenant), case_id=f"{tenant}-dry-run")
    TenantRegistry(settings).get(tenant)
    return inventory_of(settings, case, dry_run=True)


def inventory_of(settings: Settings, case: CaseRef, *, dry_run: bool = False) -> Inventory:
    """What the tenant holds in every system of the platform's data map. A system bound to
    nothing stops the case here, and so does one that cannot be reached: no copy goes
    uncounted."""
    datamap = datamap_of(settings)
    datamap.require_bound()
    locations = [
        get_location(name, settings).inventory(case, dry_run=dry_run)
        for name in platform_order(settings)
    ]
    return Inventory(
        tenant=case.tenant,
        case_id=case.case_id,
        taken_at=datetime.now(UTC),
        locations=locations,
        systems=system_entries(datamap),
    )


def take_inventory(settings: Settings, case: CaseRef) -> Inventory:
    try:
        inventory = inventory_of(settings, case)
    except IsolationBreachError as breach:
        record_incident(settings, case, breach, stage="inventory")
        raise
    AuditTrail.open(settings, case).record(
        events.InventoryRecorded(
            locations={
                loc.location: events.LocationCount(items=loc.items, bytes=loc.bytes)
                for loc in inventory.locations
            },
            tables={t.qualified: t.rows for t in inventory.tables},
            left_out=inventory.left_out,
        ),
        once="inventory",
    )
    # While the tenant is frozen and whole: what to look for in the files after destruction.
    keep_canaries(settings, case)
    return inventory


# Runs a location's part tasks wherever the engine runs them; returns their parts in order.
FanOut = Callable[[list[PartTask], ExportProgress | None], list[ExportedPart]]


def export_snapshot(
    settings: Settings,
    case: CaseRef,
    inventory: Inventory,
    *,
    record: bool = True,
    progress: ExportProgress | None = None,
    fan_out: FanOut | None = None,
) -> ExportResult:
    """Every location's part of the tenant from one snapshot, then the tenant column of every
    exported row read back. Another tenant's row stops the export with a signed incident
    record (in the case's trail too, unless `record=False`: copies and backups are no step of
    a case).

    Without `fan_out`, this process writes every part into scratch. With it, a location that
    can be cut into parts (`FannedOut`: PostgreSQL) plans them while its coordinator, here,
    holds the snapshot open, and `fan_out` runs them on a distributed engine's workers, which
    put them in the case's staging area (`export_part`); the other locations write here."""
    scratch = scratch_dir(settings, case) / "export"
    shutil.rmtree(scratch, ignore_errors=True)  # a retried export starts clean
    parts: list[ExportedPart] = []
    snapshot_time: datetime | None = None
    for location_inventory in inventory.locations:
        location = get_location(location_inventory.location, settings)
        if fan_out is not None and isinstance(location, FannedOut):
            with location.plan_export(case, location_inventory) as plan:
                result = LocationExport(
                    parts=fan_out(plan.tasks, progress), snapshot_time=plan.snapshot_time
                )
        else:
            result = location.export(case, location_inventory, scratch, progress)
        parts.extend(result.parts)
        snapshot_time = snapshot_time or result.snapshot_time
    if snapshot_time is None:
        raise IntegrityError(f"tenant {case.tenant!r}: no location produced a snapshot time")
    exported = ExportResult(parts=parts, snapshot_time=snapshot_time)
    try:
        check_export_isolation(
            settings,
            case,
            inventory,
            exported,
            part_opener(settings, case, generations_of(inventory)),
        )
    except IsolationBreachError as breach:
        record_incident(settings, case, breach, stage="export", in_trail=record)
        raise
    return exported


def export_part(settings: Settings, case: CaseRef, task: PartTask) -> ExportedPart:
    """One part of a distributed export, on whichever worker runs it: written to this
    worker's scratch, moved to the case's staging area, gone from the worker's disk."""
    location = get_location(task.location, settings)
    if not isinstance(location, FannedOut):
        raise ConfigurationError(f"location {task.location!r} cannot export parts on its own")
    store, prefix = staging_area(settings, case)
    sink = StagingSink(store, prefix, scratch_dir(settings, case) / "parts")
    return location.export_part(case, task, sink)


def inventory_rows(inventory: Inventory) -> list[dict[str, Any]]:
    """The inventory as rows for support staff: tables with counts and sizes, files in total."""
    rows: list[dict[str, Any]] = [
        {"what": t.qualified, "scope": t.scope, "rows": t.rows, "bytes (approx.)": t.bytes_estimate}
        for t in inventory.tables
    ]
    rows.append(
        {"what": "files", "scope": "tenant prefix and referenced", "rows": len(inventory.files),
         "bytes (approx.)": inventory.total_file_bytes}
    )  # fmt: skip
    return rows


@dataclass(frozen=True)
class CopyResult:
    """A verified bundle of an active tenant written to a folder: no case, no freeze."""

    tenant: str
    snapshot_time: datetime
    parts: list[BundlePart]
    manifest_sha256: str
    rows: int
    files: int
    tables: int
    entries: int


def export_copy(
    settings: Settings,
    tenant: str,
    out_dir: Path,
    *,
    say: Callable[[str], None] = lambda _: None,
    progress: ExportProgress | None = None,
) -> CopyResult:
    """A copy of an active tenant's data, on request during the contract (clause 2.2.7's
    portability): the case's own inventory, export, packaging and verification, without a
    freeze, a delivery or a case. The tenant keeps writing, so the bundle's row counts are
    reconciled with the snapshot the export read (not with a frozen inventory); every entry is
    still checked against the signed manifest. Nothing is recorded in the audit archive unless
    the export finds another tenant's data (an incident record). Scratch is wiped either way."""
    TenantRegistry(settings).get(validate_tenant_id(tenant))
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = CaseRef(tenant=tenant, case_id=f"{tenant}-{secrets.token_hex(6)}")
    try:
        say(f"inventory of {tenant}")
        inventory = inventory_of(settings, work)
        say(
            f"exporting {inventory.total_rows:,} rows in {len(inventory.tables)} tables and "
            f"{len(inventory.files):,} files ({inventory.total_file_bytes:,} bytes)"
        )
        exported = export_snapshot(settings, work, inventory, record=False, progress=progress)
        say(f"packaging ({len(exported.parts):,} entries)")
        bundle = package(settings, work, inventory, exported, record=False)
        say(f"verifying {len(bundle.parts)} part(s) against the signed manifest and the snapshot")
        verify_package(
            settings, work, bundle, snapshot_inventory(inventory, exported), record=False
        )
        taken = [out_dir / Path(part.path).name for part in bundle.parts]
        clash = [str(path) for path in taken if path.exists()]
        if clash:
            raise ConfigurationError(
                f"{', '.join(clash)} already exist(s): choose an empty folder with --out; "
                "nothing was overwritten"
            )
        for part, target in zip(bundle.parts, taken, strict=True):
            shutil.move(part.path, target)
            if sha256_file(target) != part.sha256:
                raise IntegrityError(f"{target}: digest changed while moving it; export again")
        return CopyResult(
            tenant=tenant,
            snapshot_time=exported.snapshot_time,
            parts=[
                p.model_copy(update={"path": str(t)})
                for p, t in zip(bundle.parts, taken, strict=True)
            ],
            manifest_sha256=bundle.manifest_sha256,
            rows=bundle.rows,
            files=bundle.files,
            tables=len(inventory.tables),
            entries=bundle.entries,
        )
    finally:
        shutil.rmtree(scratch_dir(settings, work), ignore_errors=True)


def snapshot_inventory(inventory: Inventory, exported: ExportResult) -> Inventory:
    """The inventory with each table's rows as the export's snapshot read them: what the bundle
    of a tenant that was not frozen must hold."""
    rows: dict[str, int] = {}
    for part in exported.parts:
        if part.kind == "table" and part.table is not None:
            rows[part.table] = rows.get(part.table, 0) + (part.rows or 0)
    return inventory.model_copy(
        update={
            "locations": [
                location.model_copy(
                    update={
                        "tables": [
                            t.model_copy(update={"rows": rows.get(t.qualified, 0)})
                            for t in location.tables
                        ]
                    }
                )
                for location in inventory.locations
            ]
        }
    )
