"""Compaction: the tenant's bytes out of the pages its deletion left them on, proven by its
canaries, for every tenant destroyed since the last run at once (clause 2.3.2: every copy).

A destruction deletes rows: the queries find nothing, and the certificate says so, dated T.
The deleted values stay in the tables' files until the tables are rewritten. One run rewrites
each table any pending case touched (its inventory's tables with rows), once, whatever the
number of cases: the cost of rewriting a shared table is shared by every tenant destroyed
since the last run. Then, per case, the canaries kept at its inventory are looked for in the
rewritten tables' files and in the write-ahead log still on disk; the result is a signed
addendum to the certificate (`certificates/<tenant>/<case>.residue.json`) and an event in the
case's trail, and the canaries are destroyed with their key.

A certificate issued at destruction is completed by the addendum, rather than held until the
compaction: the destruction's date is the contract's, the compaction a scheduled window's,
and an auditor reads both, each signed, with the date each became true.

A case whose pages still hold one of its canaries after the rewrite is not closed: no addendum,
its canaries kept, the run reports it, and the next run tries again. The log is residue dated
otherwise: its segments go as checkpoints recycle them and the archive's retention ends.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from offboarding.core.canonical import canonical_json
from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer
from offboarding.destruction.destruction import archive_documents, certificate_key
from offboarding.evidence.archive import compacted_page_key, render_certificate_html
from offboarding.export.canaries import read_canaries, shred_canaries
from offboarding.locations import Capability, capable, get_location
from offboarding.locations.base import Residual, Residue, ResidueSite
from offboarding.registry import TenantRegistry
from offboarding.stores import open_store
from offboarding.trail import events
from offboarding.trail.audit import AuditTrail
from offboarding.trail.events import ResiduePlace
from offboarding.trail.records import PersonErasureCompacted, archive_record

__all__ = [
    "CompactionRun",
    "addendum_key",
    "compact_destroyed",
    "pending_cases",
    "queue_erasure",
]


def addendum_key(case: CaseRef) -> str:
    return f"certificates/{case.tenant}/{case.case_id}.residue.json"


def pending_cases(settings: Settings) -> list[CaseRef]:
    """Destroyed tenants' cases, certified, with canaries kept and no addendum yet."""
    registry = TenantRegistry(settings)
    found = []
    for tenant in registry.tenants("destroyed"):
        case_id = registry.get(tenant).offboarding_case
        if not case_id:
            continue
        case = CaseRef(tenant=tenant, case_id=case_id)
        recorded = [e.data for e in AuditTrail.open(settings, case).recorded()]
        kinds = {type(data) for data in recorded}
        if {
            events.Certified,
            events.CanariesKept,
        } <= kinds and events.ResidueCompacted not in kinds:
            found.append(case)
    return found


def _erasures(settings: Settings) -> Path:
    return settings.root / "residue" / "erasures"


def queue_erasure(settings: Settings, tenant: str, request: str, tables: list[str]) -> None:
    """A person's erasure touched these tables: the next run rewrites them too (their names,
    never a value, wait in the pipeline's own home)."""
    if tables:
        _erasures(settings).mkdir(parents=True, exist_ok=True)
        entry = {"tenant": tenant, "request": request, "tables": sorted(tables)}
        (_erasures(settings) / f"{request}.json").write_text(json.dumps(entry))


def _queued(settings: Settings) -> list[dict[str, Any]]:
    folder = _erasures(settings)
    return (
        [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
        if folder.exists()
        else []
    )


def _close_erasures(settings: Settings, run: CompactionRun, queued: list[dict[str, Any]]) -> None:
    """Each queued erasure's tables rewritten: a signed record in the person's request."""
    for entry in queued:
        archive_record(settings, f"persons/{entry['tenant']}/{entry['request']}/compacted.json",
                       PersonErasureCompacted(
            tenant=entry["tenant"], request=entry["request"], run=run.run,
            compacted_at=run.compacted_at, tables=len(entry["tables"]),
            method="the tables the erasure touched rewritten (new files, the old unlinked), "
            "CHECKPOINT and a WAL switch",
        ))  # fmt: skip
        (_erasures(settings) / f"{entry['request']}.json").unlink(missing_ok=True)
        run.erasures.append(entry["request"])


@dataclass(frozen=True)
class _Touched:
    """What a case's frozen inventory says the tenant had: its tables with rows (of every
    system, by qualified name) and the systems that held any of its items."""

    tables: list[str]
    systems: frozenset[str]


def _touched(settings: Settings, case: CaseRef) -> _Touched:
    inventory = AuditTrail.open(settings, case).state().inventory
    if inventory is None:
        return _Touched([], frozenset())
    return _Touched(
        sorted(t for t, rows in inventory.tables.items() if rows),
        frozenset(name for name, count in inventory.locations.items() if count.items),
    )


@dataclass
class CompactionRun:
    """What one run did: the cases it closed, those still holding residue, the tables."""

    run: str
    compacted_at: datetime
    tables: dict[str, list[str]] = field(default_factory=dict)  # system -> tables rewritten
    closed: dict[str, str] = field(default_factory=dict)  # case -> addendum key
    residue: dict[str, str] = field(default_factory=dict)  # case -> what is still there
    erasures: list[str] = field(default_factory=list)  # person erasures' requests compacted

    def summary(self) -> str:
        tables = sum(len(t) for t in self.tables.values())
        return (
            f"compaction {self.run}: {tables} table(s) rewritten for "
            f"{len(self.closed) + len(self.residue)} case(s) and {len(self.erasures)} person "
            f"erasure(s); {len(self.closed)} case(s) closed with an addendum, "
            f"{len(self.residue)} still holding residue"
        )


def _places(
    name: str, sites: list[ResidueSite], found: dict[str, Residue]
) -> tuple[list[ResiduePlace], list[ResiduePlace]]:
    """The scan's places for the addendum, and those the run rewrote that still hold a
    canary: the case is then not closed."""
    by_place = {site.place: site for site in sites}
    places, kept = [], []
    for place, r in found.items():
        site = by_place[place]
        places.append(ResiduePlace(
            system=name, place=place, files=r.files, bytes=r.bytes, canaries=r.canaries,
            found=r.holding,
            status="lingering" if r.holding else "unverified" if r.unreadable else "purged",
            until=site.ends if r.holding else r.unreadable, method=site.method,
        ))  # fmt: skip
        if r.holding and site.rewritten:
            kept.append(places[-1])
    return places, kept


def _close(
    settings: Settings, case: CaseRef, run: CompactionRun, places: list[ResiduePlace]
) -> str:
    """The signed addendum, the trail's event, then the canaries destroyed with their key."""
    archive = open_store(settings.store_url("archive"), write_once=True)
    signer = Signer.load_or_create(settings.keys_dir)
    with archive.open_read(certificate_key(case)) as handle:
        certificate = handle.read()
    certificate_sha256 = hashlib.sha256(certificate).hexdigest()
    key = addendum_key(case)
    document = {
        "record": "residue-addendum", "tenant": case.tenant, "case_id": case.case_id,
        "certificate": certificate_key(case), "certificate_sha256": certificate_sha256,
        "run": run.run, "compacted_at": run.compacted_at.isoformat(),
        "method": "each place a system keeps deleted bytes in, rewritten by the compaction or "
        "dated by the system (each place's own method); then the tenant's canaries, sampled at "
        "its inventory, looked for in every file of each place",
        "places": [p.model_dump() for p in places],
        "canaries": "destroyed with their key after this scan",
        "signing_key": signer.fingerprint,
    }  # fmt: skip
    body = canonical_json(document)
    page = render_certificate_html(json.loads(certificate), json.loads(body)).encode()
    archive_documents(archive, signer, ((key, body), (compacted_page_key(key), page)))
    AuditTrail.open(settings, case).record(
        events.ResidueCompacted(
            run=run.run, compacted_at=run.compacted_at,
            tables={name: len(t) for name, t in run.tables.items()}, places=places,
            addendum=key, addendum_sha256=hashlib.sha256(body).hexdigest(),
            canaries_destroyed=True,
        ),
        once="residue",
    )  # fmt: skip
    shred_canaries(settings, case)
    return key


def compact_destroyed(
    settings: Settings, *, say: Callable[[str], None] = lambda _: None
) -> CompactionRun:
    """One run for every case pending (see `pending_cases`): rewrite the tables they touched,
    each once, then scan and close each case."""
    cases = pending_cases(settings)
    queued = _queued(settings)
    run = CompactionRun(run=f"compaction-{secrets.token_hex(6)}", compacted_at=datetime.now(UTC))
    touched = {case.case_id: _touched(settings, case) for case in cases}
    erased = sorted({t for entry in queued for t in entry["tables"]})
    systems = {name: _residual(settings, name) for name in capable(settings, Capability.RESIDUE)}
    for name, location in systems.items():
        holding = [c for c in cases if name in touched[c.case_id].systems]
        tables = sorted({t for c in holding for t in touched[c.case_id].tables} | set(erased))
        say(f"{name}: rewriting for {len(holding)} case(s), {len(queued)} person erasure(s)")
        run.tables[name] = location.compact(tables) if holding or erased else []
    run.compacted_at = datetime.now(UTC)
    _close_erasures(settings, run, queued)
    for case in cases:
        canaries = read_canaries(settings, case)
        places: list[ResiduePlace] = []
        kept: list[ResiduePlace] = []
        for name, location in systems.items():
            if name not in touched[case.case_id].systems or not canaries.get(name):
                continue
            mine = [t for t in touched[case.case_id].tables if t in run.tables[name]]
            found = location.scan_residue(mine, canaries[name])
            scanned, held = _places(name, location.residue_sites(), found)
            places, kept = places + scanned, kept + held
        if kept:
            run.residue[case.case_id] = "; ".join(
                f"{p.system} {p.place}: {p.found} of {p.canaries} canaries" for p in kept
            )
            say(f"{case.case_id}: residue still on disk ({run.residue[case.case_id]})")
            continue
        run.closed[case.case_id] = _close(settings, case, run, places)
        say(f"{case.case_id}: " + "; ".join(
            f"{p.system} {p.place}: {p.found} of {p.canaries} canaries in {p.files} files "
            f"({p.bytes} bytes)" for p in places))  # fmt: skip
    return run


def _residual(settings: Settings, name: str) -> Residual:
    location = get_location(name, settings)
    if not isinstance(location, Residual):  # pragma: no cover - checked at registration
        raise TypeError(f"{name}: its plug-in declares residue it cannot scan")
    return location
