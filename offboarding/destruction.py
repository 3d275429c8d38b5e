"""The stages of destruction, as plain functions `flows/destroy.py` wraps in tasks: refuse on
legal hold, destroy every location, verify each independently, certify, archive."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version

from offboarding.audit import AuditTrail
from offboarding.config import Settings
from offboarding.errors import DestructionIncompleteError, LegalHoldError
from offboarding.locations import DESTRUCTION_ORDER, Remaining, Removal, get_location
from offboarding.records import CaseRef, Certificate, LocationEvidence
from offboarding.registry import TenantRegistry
from offboarding.signing import Signer
from offboarding.store import open_store

__all__ = [
    "ArchivedCertificate",
    "certificate_key",
    "certify",
    "check_legal_hold",
    "destroy_location",
    "neighbours_digests",
    "verify_location",
]


def _trail(settings: Settings, case: CaseRef) -> AuditTrail:
    return AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))


def check_legal_hold(settings: Settings, case: CaseRef) -> None:
    """Refuse, on the record, to destroy a tenant on legal hold."""
    try:
        TenantRegistry(settings).require_no_hold(case.tenant)
    except LegalHoldError as refusal:
        _trail(settings, case).record("destruction-refused", {"reason": "legal hold"})
        raise refusal


def neighbours_digests(settings: Settings, case: CaseRef) -> dict[str, str]:
    return {
        name: get_location(name, settings).neighbours_digest(case) for name in DESTRUCTION_ORDER
    }


def destroy_location(settings: Settings, case: CaseRef, name: str) -> Removal:
    removal = get_location(name, settings).destroy(case)
    _trail(settings, case).record(
        "location-destroyed",
        {"location": name, "items_before": removal.items_before,
         "bytes_before": removal.bytes_before, "items_removed": removal.items_removed},
    )  # fmt: skip
    return removal


def verify_location(settings: Settings, case: CaseRef, name: str) -> Remaining:
    return get_location(name, settings).verify(case)


def certificate_key(case: CaseRef) -> str:
    return f"certificates/{case.tenant}/{case.case_id}.json"


@dataclass(frozen=True)
class ArchivedCertificate:
    key: str
    sha256: str
    public_key_key: str


def _digest(digests: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def certify(
    settings: Settings,
    case: CaseRef,
    *,
    acknowledged_at: datetime,
    deadline: datetime,
    started_at: datetime,
    removals: dict[str, Removal],
    remaining: dict[str, Remaining],
    neighbours_before: dict[str, str],
    neighbours_after: dict[str, str],
) -> ArchivedCertificate:
    """Refuse unless every location is empty and the neighbours unchanged; then sign the
    certificate, archive it with the public key, and close the registry entry."""
    left = {name: r.items for name, r in remaining.items() if r.items}
    if left:
        raise DestructionIncompleteError(
            f"tenant {case.tenant!r}: data remains after destruction in {left}; no certificate "
            "is issued. Rerun the destruction (it is idempotent) and check the location's log"
        )
    changed = sorted(
        n for n in neighbours_before if neighbours_before[n] != neighbours_after.get(n)
    )
    if changed:
        raise DestructionIncompleteError(
            f"tenant {case.tenant!r}: other tenants' data changed in {changed} during destruction; "
            "no certificate is issued. Investigate as a possible incident (clause 2.2.4)"
        )
    signer = Signer.load_or_create(settings.keys_dir)
    archive = open_store(settings.store_url("archive"), write_once=True)
    key = certificate_key(case)
    public_key_key = f"keys/{signer.fingerprint.replace(':', '-')}.pem"
    if archive.exists(key):  # a rerun after the certificate was archived: it stands
        with archive.open_read(key) as existing:
            return ArchivedCertificate(
                key, hashlib.sha256(existing.read()).hexdigest(), public_key_key
            )
    trail = _trail(settings, case)
    inventory = trail.find("inventory")
    inventory_data = inventory[-1]["data"] if inventory else {}
    verified_at = datetime.now(UTC)
    certificate = Certificate(
        tenant=case.tenant,
        case_id=case.case_id,
        tool="tenant-offboarding",
        tool_version=version("tenant-offboarding"),
        acknowledged_at=acknowledged_at,
        deadline=deadline,
        started_at=started_at,
        completed_at=verified_at,
        locations=[
            LocationEvidence(
                location=name,
                method=removals[name].method,
                technique=removals[name].technique,
                items_before=removals[name].items_before,
                bytes_before=removals[name].bytes_before,
                items_removed=removals[name].items_removed,
                remaining=remaining[name].items,
                verification=remaining[name].verification,
                verified_at=verified_at,
            )
            for name in DESTRUCTION_ORDER
        ],
        neighbours_digest_before=_digest(neighbours_before),
        neighbours_digest_after=_digest(neighbours_after),
        neighbours_unchanged=True,
        legal_hold_seen=bool(trail.find("destruction-refused")),
        inventory_rows=sum(inventory_data.get("tables", {}).values()),
        inventory_files=int(inventory_data.get("files", {}).get("items", 0)),
        audit_chain_head=trail.head(),
        signing_key=signer.fingerprint,
    )
    body = json.dumps(certificate.model_dump(mode="json"), indent=2, sort_keys=True).encode()
    if not archive.exists(key + ".sig"):
        archive.put_bytes(key + ".sig", signer.sign(body))
    archive.put_bytes(key, body)
    if not archive.exists(public_key_key):
        archive.put_bytes(public_key_key, signer.public_pem)
    erase_contact_by = TenantRegistry(settings).mark_destroyed(case.tenant, verified_at)
    trail.record(
        "certified",
        {"certificate": key, "certificate_sha256": hashlib.sha256(body).hexdigest(),
         "contact_details_erase_by": erase_contact_by.isoformat()},
        once="certified",
    )  # fmt: skip
    return ArchivedCertificate(key, hashlib.sha256(body).hexdigest(), public_key_key)
