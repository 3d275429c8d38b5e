"""Incident records (clause 2.2.4): when the pipeline finds another tenant's data where only
this tenant's belongs, the case stops and a signed record goes to the archive with what the
clients must be told within 72 hours: nature, categories of data, approximate numbers of people
and records concerned. The record holds ids, counts and categories: no tenant data.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offboarding.core.canonical import canonical_json
from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError, IsolationBreachError
from offboarding.core.records import CaseRef, ExportResult, Inventory
from offboarding.core.signing import Signer
from offboarding.datamap import platform_shape
from offboarding.stores import open_store
from offboarding.trail import AuditTrail, events

__all__ = ["NOTIFICATION_WINDOW", "check_export_isolation", "record_incident"]

NOTIFICATION_WINDOW = timedelta(hours=72)


def record_incident(
    settings: Settings,
    case: CaseRef,
    breach: IsolationBreachError,
    stage: str,
    *,
    in_trail: bool = True,
) -> str:
    """Archive a signed incident record for the breach; return its key. `in_trail=False` for
    work that is no case (a copy on request, a backup): the record alone, under `incidents/`."""
    detected_at = datetime.now(UTC)
    facts = breach.facts
    document = {
        "format": "tenant-offboarding-incident/1",
        "clause": "2.2.4",
        "tenant_offboarded": case.tenant,
        "case_id": case.case_id,
        "stage": stage,
        "detected_at": detected_at.isoformat(),
        "notify_clients_by": (detected_at + NOTIFICATION_WINDOW).isoformat(),
        "nature": facts.get("nature", str(breach)),
        "affected_tenants": facts.get("affected_tenants", []),
        "categories_of_data": facts.get("categories", []),
        "approximate_records": facts.get("approximate_records"),
        "approximate_people": facts.get("approximate_people"),
        "people_estimate_note": "at most one person per record where not counted",
        "containment": "the case stopped before anything was delivered; no link was sent",
        "status": "open: the DPO notifies the affected clients and closes this record",
    }
    body = canonical_json(document)
    signer = Signer.load_or_create(settings.keys_dir)
    archive = open_store(settings.store_url("archive"), write_once=True)
    key = f"incidents/{case.tenant}/{case.case_id}/{detected_at:%Y%m%dT%H%M%S%fZ}.json"
    archive.put_bytes(key + ".sig", signer.sign(body))
    archive.put_bytes(key, body)
    if not in_trail:
        return key
    AuditTrail(settings, case, signer).record(
        events.IncidentRecorded(
            record=key,
            notify_clients_by=detected_at + NOTIFICATION_WINDOW,
            stage=stage,
            affected_tenants=document["affected_tenants"],
        )
    )
    return key


def check_export_isolation(
    settings: Settings,
    case: CaseRef,
    inventory: Inventory,
    exported: ExportResult,
    open_part: Callable[[str], AbstractContextManager[BinaryIO]],
) -> None:
    """Read back the tenant column of every exported part of a tenant-scoped table, apart
    from the query that wrote it (`open_part` opens a part's source, wherever it is): a
    single other tenant's row stops the case."""

    # Each table's own tenant column: a MariaDB system names its owner column itself.
    scoped = {
        t.qualified: t.tenant_column or platform_shape(settings).tenant_column
        for t in inventory.tables
        if t.scope == "tenant"
    }
    foreign_rows = 0
    owners: set[str] = set()
    tables: set[str] = set()
    for part in exported.parts:
        if part.kind != "table" or part.table not in scoped:
            continue
        column = scoped[part.table]
        with open_part(part.source) as handle:
            parquet = pq.ParquetFile(handle)
            if column not in parquet.schema_arrow.names:
                raise IntegrityError(
                    f"the export of tenant {case.tenant!r}: table {part.table} has no column "
                    f"{column!r} to read its rows' tenant back from; nothing was packaged. "
                    "Check the tenant column the data map names for its system"
                )
            for batch in parquet.iter_batches(columns=[column]):
                values = pc.cast(batch.column(0), pa.string())
                # A NULL owner is not this tenant's either.
                foreign = pc.fill_null(pc.not_equal(values, pa.scalar(case.tenant)), True)
                count = pc.sum(foreign).as_py() or 0
                if count:
                    foreign_rows += count
                    owners.update(str(v) for v in pc.unique(pc.filter(values, foreign)).to_pylist())
                    tables.add(str(part.table))
    if foreign_rows:
        raise IsolationBreachError(
            f"the export of tenant {case.tenant!r} holds {foreign_rows} row(s) of "
            f"{len(owners)} other tenant(s) in {sorted(tables)}: the case stops before anything "
            "is packaged and an incident is recorded (clause 2.2.4)",
            facts={
                "nature": "rows of other tenants appeared in the offboarded tenant's export "
                "(caught by the read-back check before packaging; nothing was delivered)",
                "affected_tenants": sorted(owners),
                "categories": [f"rows of {t}" for t in sorted(tables)],
                "approximate_records": foreign_rows,
                "approximate_people": foreign_rows,
            },
        )
