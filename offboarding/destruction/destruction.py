"""The stages of destruction, as plain functions `flows/destroy.py` wraps in tasks: the trail's
warrant (offboarding/destruction/warrant.py), destroy every location, verify each
independently, certify, archive. Every stage that changes or certifies anything asks for the
warrant itself, so no caller can skip it; the dates come from the trail, never the caller."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version

from offboarding.core.canonical import canonical_json, compact_json
from offboarding.core.config import Settings
from offboarding.core.errors import DestructionIncompleteError, IsolationBreachError
from offboarding.core.faults import crash_point
from offboarding.core.records import (
    ApprovalEvidence,
    CaseRef,
    Certificate,
    HoldEvent,
    LocationEvidence,
    SystemStatus,
)
from offboarding.core.signing import Signer, load_key_list
from offboarding.datamap import AttestedSystem, datamap_of
from offboarding.delivery.receipts import downloads, fully_downloaded
from offboarding.destruction.warrant import Warrant, require_agreement, require_warrant
from offboarding.evidence.archive import publish_key_list, render_certificate_html
from offboarding.evidence.incidents import record_incident
from offboarding.evidence.timestamps import anchor_certified
from offboarding.locations import (
    Capability,
    LocationFacts,
    Remaining,
    Removal,
    capable,
    destruction_order,
    get_location,
    isolation_check,
    physical_residue,
)
from offboarding.registry import TenantRegistry
from offboarding.stores import ObjectStore, open_store
from offboarding.trail import AuditTrail, CaseState, events

__all__ = [
    "ArchivedCertificate",
    "DestructionEvidence",
    "archive_documents",
    "certificate_key",
    "certify",
    "check_isolation",
    "check_warrant",
    "destroy_location",
    "neighbours_digests",
    "report_key",
    "require_agreement",
    "reverify",
    "systems_summary",
    "tenants_in_offboarding",
    "verify_location",
]


def check_warrant(settings: Settings, case: CaseRef) -> Warrant:
    """The case's permission to destroy, from its signed trail (a hold refused on the
    record); raises, having touched nothing, when the trail does not allow it."""
    return require_warrant(settings, case)


def tenants_in_offboarding(settings: Settings, case: CaseRef) -> list[str]:
    """Other tenants with open cases (frozen): their own steps change their data, so the
    neighbours check leaves them out. Every active tenant must stay byte-identical."""
    return [t for t in TenantRegistry(settings).tenants(status="frozen") if t != case.tenant]


def neighbours_digests(
    settings: Settings, case: CaseRef, excluded: list[str] | None = None
) -> dict[str, str]:
    skip = frozenset(excluded or ())
    return {
        name: get_location(name, settings).neighbours_digest(case, skip)
        for name in destruction_order(settings)
    }


def _inventoried(settings: Settings, case: CaseRef) -> dict[str, int] | None:
    """Rows per table of the case's frozen inventory (None for a case without one)."""
    inventory = AuditTrail.open(settings, case).state().inventory
    return dict(inventory.tables) if inventory else None


@contextmanager
def _incident_on_breach(settings: Settings, case: CaseRef) -> Iterator[None]:
    try:
        yield
    except IsolationBreachError as breach:
        record_incident(settings, case, breach, "destruction")
        raise


def check_isolation(settings: Settings, case: CaseRef) -> dict[str, str]:
    """Before any location is destroyed, in every system whose plug-in can check it: the
    tenant's rows are listed by key, no row outside them references them, rows shared with
    other tenants are settled by the settings. Stops
    the case with every copy still in place otherwise (an incident if it crosses tenants).
    Returns the shared rows and their handling, for the certificate."""
    require_warrant(settings, case)
    inventoried = _inventoried(settings, case)
    shared: dict[str, str] = {}
    for name in capable(settings, Capability.ISOLATION):  # every one before any is touched
        with _incident_on_breach(settings, case):
            shared |= isolation_check(settings, name).check_isolation(case, inventoried)
    return shared


def destroy_location(settings: Settings, case: CaseRef, name: str) -> Removal:
    require_warrant(settings, case)
    with _incident_on_breach(settings, case):
        removal = get_location(name, settings).destroy(case, _inventoried(settings, case))
    crash_point(f"destroy:{name}")
    AuditTrail.open(settings, case).record(
        events.LocationDestroyed(
            location=name, items_before=removal.items_before, bytes_before=removal.bytes_before,
            items_removed=removal.items_removed,
        )
    )  # fmt: skip
    return removal


def verify_location(settings: Settings, case: CaseRef, name: str) -> Remaining:
    remaining = get_location(name, settings).verify(case)
    crash_point(f"verify:{name}")
    return remaining


def reverify(settings: Settings, case: CaseRef) -> dict[str, Remaining]:
    """Re-scan every location of a destroyed case, on the record; fail if anything is left."""
    results: dict[str, Remaining] = {
        name: verify_location(settings, case, name) for name in destruction_order(settings)
    }
    AuditTrail.open(settings, case).record(
        events.Reverified(remaining={name: r.items for name, r in results.items()})
    )
    left = {name: r.items for name, r in results.items() if r.items}
    if left:
        raise DestructionIncompleteError(f"case {case.case_id}: data of the tenant found in {left}")
    return results


def systems_summary(settings: Settings, case: CaseRef) -> str:
    """The data map's systems as the case's certificate lists them, in one line: verified,
    attested, or lingering until a date (names of systems, never tenant data)."""
    document = AuditTrail.open(settings, case).state().certificate or {}
    return "; ".join(
        f"{s['name']} {s['status']}" + (f" until {str(s['until'])[:10]}" if s.get("until") else "")
        for s in document.get("systems", [])
    )


def certificate_key(case: CaseRef) -> str:
    return f"certificates/{case.tenant}/{case.case_id}.json"


def report_key(case: CaseRef) -> str:
    return f"reports/{case.tenant}/{case.case_id}.html"


@dataclass(frozen=True)
class ArchivedCertificate:
    key: str
    sha256: str
    public_key_key: str
    report_key: str


def _digest(digests: dict[str, str] | None) -> str:
    return hashlib.sha256(compact_json(digests or {})).hexdigest()


@dataclass(frozen=True)
class DestructionEvidence:
    """What a destruction run gathered, for its certificate: when it started, what each location
    held and removed (and how it was confined to the tenant), what re-scanning each found, the
    rows shared with other tenants and their handling; in the optional audit mode, the
    neighbours' digests around it. The acknowledgement and the deadline are the trail's."""

    started_at: datetime
    removals: dict[str, Removal]
    remaining: dict[str, Remaining]
    shared_rows: dict[str, str] = field(default_factory=dict)
    neighbours_before: dict[str, str] | None = None
    neighbours_after: dict[str, str] | None = None
    neighbours_excluded: list[str] = field(default_factory=list)


def _require_clean(case: CaseRef, evidence: DestructionEvidence) -> None:
    """No certificate while data remains, or while the neighbours' digests changed."""
    left = {name: r.items for name, r in evidence.remaining.items() if r.items}
    if left:
        raise DestructionIncompleteError(
            f"tenant {case.tenant!r}: data remains after destruction in {left}; no certificate "
            "is issued. Rerun the destruction (it is idempotent) and check the location's log"
        )
    before, after = evidence.neighbours_before or {}, evidence.neighbours_after or {}
    changed = sorted(n for n in before if before[n] != after.get(n))
    if changed:
        raise DestructionIncompleteError(
            f"tenant {case.tenant!r}: other tenants' data changed in {changed} during destruction; "
            "no certificate is issued. Investigate as a possible incident (clause 2.2.4)"
        )


def archive_documents(
    archive: ObjectStore, signer: Signer, documents: tuple[tuple[str, bytes], ...]
) -> None:
    """Each document, its signature first, into the write-once archive (a rerun skips both)."""
    for path, content in documents:
        if not archive.exists(path + ".sig"):
            archive.put_bytes(path + ".sig", signer.sign(content))
        crash_point(f"certify:{path.split('/')[0]}-signed")
        if not archive.exists(path):
            archive.put_bytes(path, content)
        crash_point(f"certify:{path.split('/')[0]}-written")


def certify(
    settings: Settings, case: CaseRef, evidence: DestructionEvidence, *, performed_by: str = ""
) -> ArchivedCertificate:
    """Refuse unless every location is empty (and, in audit mode, the neighbours' digests
    unchanged); then record the
    certificate in the audit chain, archive it signed with a human-readable report, and close
    the registry entry. A rerun after a crash at any point writes the same bytes."""
    warrant = require_warrant(settings, case)
    _require_clean(case, evidence)
    signer = Signer.load_or_create(settings.keys_dir)
    archive = open_store(settings.store_url("archive"), write_once=True)
    trail = AuditTrail.open(settings, case)
    # Recorded once in the chain: a rerun gets the same document back, so the same bytes.
    state = trail.state()
    if state.certificate is None:
        awaiting = {
            name: system.attested.role
            for name, system in datamap_of(settings).attested().items()
            if name not in state.attestations
        }
        if awaiting:
            raise DestructionIncompleteError(
                f"tenant {case.tenant!r}: no certificate while attested systems await their "
                f"role's confirmation: {', '.join(f'{n} ({r})' for n, r in awaiting.items())}. "
                "Confirm in the destroy run's Resume form, or `offboard attest`"
            )
        trail.record(
            events.CertificateRecorded(
                certificate=_certificate(
                    settings, warrant, state, signer, evidence, performed_by
                ).model_dump(mode="json")
            ),
            once="certificate",
        )  # fmt: skip
        state = trail.state()
    document = state.certificate
    assert document is not None
    body = canonical_json(document)
    key = certificate_key(case)
    html = render_certificate_html(document).encode()
    public_key_key = f"keys/{signer.fingerprint.replace(':', '-')}.pem"
    archive_documents(archive, signer, ((key, body), (report_key(case), html)))
    publish_key_list(archive, load_key_list(settings.keys_dir))  # every key, with its period
    erase_contact_by = TenantRegistry(settings).mark_destroyed(
        case.tenant, datetime.fromisoformat(document["completed_at"])
    )
    trail.record(
        events.Certified(
            certificate=key, certificate_sha256=hashlib.sha256(body).hexdigest(),
            report=report_key(case), report_sha256=hashlib.sha256(html).hexdigest(),
            contact_details_erase_by=erase_contact_by,
        ),
        once="certified",
    )  # fmt: skip
    # Anchored outside the operator: the chain's head (the `certified` event) and the
    # certificate get an RFC 3161 timestamp from the configured authority.
    certified = next(e for e in trail.recorded() if isinstance(e.data, events.Certified))
    anchor_certified(
        settings, archive, case, (certified.seq, trail.events()[certified.seq].body), body
    )
    return ArchivedCertificate(
        key, hashlib.sha256(body).hexdigest(), public_key_key, report_key(case)
    )


def _systems(
    settings: Settings,
    state: CaseState,
    evidence: DestructionEvidence,
    facts: dict[str, LocationFacts],
    verified_at: datetime,
) -> list[SystemStatus]:
    """The data map's systems as the certificate lists them."""
    listed = []
    for name, system in datamap_of(settings).systems.items():
        if isinstance(system, AttestedSystem):
            given = state.attestations[name]
            listed.append(
                SystemStatus(
                    name=name, description=system.description, status="attested",
                    method=system.attested.procedure.replace("{tenant}", state.case.tenant),
                    role=given.role, attested_by=given.by_pseudonym or given.by_sha256,
                    attested_at=given.at, action=given.action, evidence=given.evidence,
                )
            )  # fmt: skip
        elif name in evidence.remaining:
            until = evidence.remaining[name].pending_until
            lingering = until is not None and until > verified_at
            how = f"{facts[name].technique}; verified by {facts[name].verification_method}"
            listed.append(
                SystemStatus(
                    name=name, description=system.description,
                    status="lingering" if lingering else "verified",
                    method=how,
                    until=until if lingering else None,
                )
            )  # fmt: skip
    return listed


def _location_evidence(
    settings: Settings,
    evidence: DestructionEvidence,
    facts: Mapping[str, LocationFacts],
    verified_at: datetime,
) -> list[LocationEvidence]:
    """Each location's removal and re-scan, in the order they were destroyed."""
    removals, remaining = evidence.removals, evidence.remaining
    residual = capable(settings, Capability.RESIDUE)  # NIST clear only once rewritten
    return [
        LocationEvidence(
            location=name,
            media=facts[name].media,
            method="delete" if name in residual else removals[name].method,
            technique=removals[name].technique,
            items_before=removals[name].items_before,
            bytes_before=removals[name].bytes_before,
            items_removed=removals[name].items_removed,
            verification_method=facts[name].verification_method,
            verification_result="pass" if remaining[name].items == 0 else "fail",
            remaining=remaining[name].items,
            verification=remaining[name].verification,
            verified_at=verified_at,
            pending_until=remaining[name].pending_until,
            isolation=removals[name].isolation,
            details={**removals[name].details, **remaining[name].details},
        )
        for name in destruction_order(settings)
    ]


def _approvals(state: CaseState) -> list[ApprovalEvidence]:
    """Every approval the case asked for, with who gave it and when (if it was given)."""
    given = state.approvals_given
    return [
        ApprovalEvidence(
            request=ref,
            action=asked.action,
            requested_by=asked.by_pseudonym,
            requested_at=asked_at,
            approved_by=given[ref][0].by_pseudonym if ref in given else None,
            approved_at=given[ref][1] if ref in given else None,
        )
        for ref, (asked, asked_at) in state.approvals_requested.items()
    ]


def _certificate(
    settings: Settings,
    warrant: Warrant,
    state: CaseState,
    signer: Signer,
    evidence: DestructionEvidence,
    performed_by: str,
) -> Certificate:
    case = warrant.case
    removals = evidence.removals
    audited = evidence.neighbours_before is not None
    inventory = state.inventory
    verified_at = datetime.now(UTC)
    facts = {name: get_location(name, settings).describe() for name in destruction_order(settings)}
    locations = _location_evidence(settings, evidence, facts, verified_at)
    systems = _systems(settings, state, evidence, facts, verified_at)
    gone_by = max([verified_at, *(loc.pending_until for loc in locations if loc.pending_until),
                   *(s.attested_at for s in systems if s.attested_at)])  # fmt: skip
    version_ = version("tenant-offboarding")
    receipts = downloads(settings, case)
    parts = [p.key.rsplit("/", 1)[-1] for p in (state.delivery.parts if state.delivery else [])]
    return Certificate(
        tenant=case.tenant,
        case_id=case.case_id,
        subject=f"every copy of the data of tenant {case.tenant!r} held by the operator: "
        "database rows and schema, uploaded files, export bundles, backups in every location, "
        "the tenant's data key, and worker scratch space",
        performed_by=f"{settings.operator_name}, by the tenant-offboarding destroy flow"
        + (f" ({performed_by})" if performed_by else "")
        + f" on {socket.gethostname()}",
        validated_by=f"independent re-scan of every location by tenant-offboarding {version_}; "
        f"signed with Ed25519 key {signer.fingerprint}",
        tool="tenant-offboarding",
        tool_version=version_,
        terminated_at=state.frozen.frozen_at if state.frozen else None,
        delivered_at=state.delivered_at,
        acknowledgement="deemed-delivered" if warrant.deemed_delivered else "acknowledged",
        acknowledged_at=warrant.acknowledged_at,
        deadline=warrant.deadline,
        started_at=evidence.started_at,
        completed_at=verified_at,
        all_copies_gone_by=gone_by,
        deadline_met=gone_by <= warrant.deadline,
        physical_residue=(residue := physical_residue(settings, verified_at)),
        physically_purged_by=max((r.until for r in residue if r.until), default=None),
        inventory_rows=inventory.rows if inventory else 0,
        inventory_files=inventory.locations["files"].items
        if inventory and "files" in inventory.locations
        else 0,
        inventory_bytes=inventory.total_bytes if inventory else 0,
        inventory_digest=state.inventory_digest or "",
        manifest_sha256=state.packaged.manifest_sha256 if state.packaged else None,
        bundle_downloads=len(receipts),
        bundle_first_downloaded_at=receipts[0].at if receipts else None,
        bundle_fully_downloaded=fully_downloaded(parts, receipts),
        data_backed_up=removals["backups"].items_before > 0 if "backups" in removals else False,
        backup_locations=settings.backup_store_urls(),
        locations=locations,
        systems=systems,
        left_out=inventory.left_out if inventory else [],
        legal_holds=[HoldEvent(kind=hold.kind, at=hold.at) for hold in state.holds],
        legal_hold_seen=bool(state.holds),
        approvals=_approvals(state),
        shared_rows=evidence.shared_rows,
        neighbours_digest_before=_digest(evidence.neighbours_before) if audited else None,
        neighbours_digest_after=_digest(evidence.neighbours_after) if audited else None,
        neighbours_unchanged=True if audited else None,
        neighbours_excluded=evidence.neighbours_excluded if audited else [],
        audit_chain_head=state.head,
        signing_key=signer.fingerprint,
    )
