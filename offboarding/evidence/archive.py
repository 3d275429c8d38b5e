"""The archive an auditor reads, and the offline check of everything in it.

    render_certificate_html   the human-readable report: the same facts as the certificate
    verify_archive            every signature, every case's hash chain, and that each
                              certificate and report agrees with its chain; names the first
                              thing that does not

The archive holds, per case: `cases/<tenant>/<case>/events/NNNNN-<kind>.json` (+ `.sig`),
`certificates/<tenant>/<case>.json` (+ `.sig`), `reports/<tenant>/<case>.html` (+ `.sig`),
once compacted `certificates/<tenant>/<case>.residue.json` and `reports/.../<case>.residue.html`,
`timestamps/<tenant>/<case>/*.tsr` (RFC 3161 tokens, offboarding/evidence/timestamps.py),
`keys/<fingerprint>.pem`, the public keys that signed them, and `keys/lists/signing-keys-NNNN.json`,
every version of the operator's key list (each key's validity period; core/signing.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from offboarding.core.errors import IntegrityError
from offboarding.core.records import CaseRef
from offboarding.core.signing import KeyList, signed_date, signed_fields
from offboarding.evidence.readable import MARK, render_html
from offboarding.evidence.report_v1 import render_v1
from offboarding.evidence.timestamps import Anchor, check_case, timestamp_prefix
from offboarding.stores import ObjectStore
from offboarding.trail import GENESIS, CaseState
from offboarding.trail.events import (
    CertificateRecorded,
    Certified,
    RecordedEvent,
    ResidueCompacted,
    parse_event_data,
)
from offboarding.trail.records import verify_tenant_chains

__all__ = [
    "ArchiveReport",
    "compacted_page_key",
    "latest_key_list",
    "publish_key_list",
    "render_certificate_html",
    "verify_archive",
]

_KEY_LISTS = "keys/lists/"  # signing-keys-NNNN.json, a new version per change


def render_certificate_html(
    certificate: dict[str, Any], addendum: dict[str, Any] | None = None
) -> str:
    """The page a person reads (offboarding/evidence/readable.py), signed beside the JSON."""
    return render_html(certificate, addendum)


@dataclass
class ArchiveReport:
    cases: int = 0
    events: int = 0
    certificates: int = 0
    addenda: int = 0  # residue addenda, each completing its certificate
    reports: int = 0
    downloads: int = 0  # signed download receipts
    person_records: int = 0  # answers and certificates of requests about one person
    retention_runs: int = 0  # signed records of the client's retention rules' runs
    contact_records: int = 0  # a former client's contacts removed, three years on
    records: dict[str, int] = field(default_factory=dict)  # tenant records checked, per kind
    record_chains: int = 0  # tenants whose records are chained
    record_entries: int = 0  # entries of those chains, each naming a record
    unchained_records: int = 0  # records written before their tenant's chain began
    keys: list[str] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)  # timestamp tokens checked
    unanchored: list[str] = field(default_factory=list)  # certified cases with no token
    tokens_unchecked: int = 0  # tokens present, no authority's root given to check them
    signing_keys: set[str] = field(default_factory=set)  # the keys that signed what was read


def _read(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as handle:
        return handle.read()


def _signed(
    store: ObjectStore,
    key: str,
    keys: KeyList,
    report: ArchiveReport,
    *,
    named: bool = False,
    dated: str | None = None,
) -> bytes:
    """The body of a signed document. With `named`, the key it names (`signing_key`) must be
    the one that signed it; with `dated`, that key must have been valid at the document's
    date (its field `dated`): a retired key cannot sign later records."""
    body = _read(store, key)
    if not store.exists(key + ".sig"):
        raise IntegrityError(f"{key}: its signature ({key}.sig) is missing")
    document = signed_fields(body) if named or dated else {}
    signing_key = document.get("signing_key") if named else None
    at = signed_date(document, dated) if dated else None
    used = keys.verify(body, _read(store, key + ".sig"), key, signing_key=signing_key, at=at)
    report.signing_keys.add(used.fingerprint)
    return body


def verify_archive(
    store: ObjectStore,
    public_key: Ed25519PublicKey | KeyList,
    *,
    tsa_roots: list[x509.Certificate] | None = None,
    require_timestamps: bool = False,
) -> ArchiveReport:
    """Check the whole archive offline; raise IntegrityError naming the first problem. With
    the timestamp authority's roots, every timestamp token is checked against the chain and
    certificate it covers; `require_timestamps` also fails a certified case without one.
    `public_key` is the operator's key, or its list of keys over time (rotation)."""
    keys = public_key if isinstance(public_key, KeyList) else KeyList.of(public_key)
    report = ArchiveReport()
    event_keys = sorted(k for k in _listing(store, "cases/") if k.endswith(".json"))
    chains: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
    for key in event_keys:
        case_prefix = key.rsplit("/events/", 1)[0]
        body = _signed(store, key, keys, report, named=True, dated="at")
        chains.setdefault(case_prefix, []).append(
            (key, json.loads(body), hashlib.sha256(body).hexdigest())
        )
    for case_prefix, events in chains.items():
        previous = GENESIS
        for number, (key, document, digest) in enumerate(events):
            if document.get("seq") != number:
                raise IntegrityError(f"{key}: event {number} of {case_prefix} is missing or moved")
            if document.get("prev") != previous:
                raise IntegrityError(f"{key}: does not follow the previous event (chain broken)")
            previous = digest
        report.cases += 1
        report.events += len(events)
        typed = [_typed(key, document, digest) for key, document, digest in events]
        _check_certificate(store, keys, case_prefix, typed, report)
        _check_timestamps(store, case_prefix, [d for _, _, d in events], tsa_roots, report)
    if require_timestamps and report.unanchored:
        raise IntegrityError(
            f"{report.unanchored[0]}: certified, but no timestamp token anchors it (with "
            f"--require-timestamps, {len(report.unanchored)} case(s) fail so)"
        )
    for key in sorted(o for o in _listing(store, "certificates/") if o.endswith(".json")):
        tenant_case = key.removeprefix("certificates/").removesuffix(".json")
        tenant_case = tenant_case.removesuffix(".residue")  # an addendum, beside its certificate
        if f"cases/{tenant_case}" not in chains:
            raise IntegrityError(f"{key}: no audit chain for this certificate")
    for key in sorted(o for o in _listing(store, "downloads/") if o.endswith(".json")):
        _signed(store, key, keys, report, named=True, dated="at")  # receipts, beside the chains
        report.downloads += 1
    chained = verify_tenant_chains(store, keys)  # person, retention and contacts records
    report.signing_keys |= chained.signing_keys
    report.records = dict(sorted(chained.by_kind.items()))
    report.record_chains, report.record_entries = chained.chains, chained.entries
    report.unchained_records = chained.unchained
    for kind, count in chained.by_kind.items():
        if kind.startswith("person-"):
            report.person_records += count
        elif kind.startswith("retention-"):
            report.retention_runs += count
        else:
            report.contact_records += count
    report.keys = sorted(o for o in _listing(store, "keys/") if o.endswith(".pem"))
    return report


def _check_timestamps(
    store: ObjectStore,
    case_prefix: str,
    digests: list[str],
    roots: list[x509.Certificate] | None,
    report: ArchiveReport,
) -> None:
    tenant, _, case_id = case_prefix.removeprefix("cases/").partition("/")
    case = CaseRef(tenant=tenant, case_id=case_id)
    certificate_key = f"certificates/{tenant}/{case_id}.json"
    certified = store.exists(certificate_key)
    tokens = _listing(store, timestamp_prefix(case))
    if certified and not tokens:
        report.unanchored.append(case_prefix)
    if not tokens:
        return
    if roots is None:
        report.tokens_unchecked += len(tokens)
        return
    certificate_sha256 = (
        hashlib.sha256(_read(store, certificate_key)).hexdigest() if certified else None
    )
    report.anchors += check_case(store, case, digests, certificate_sha256, roots)


def publish_key_list(archive: ObjectStore, keys: KeyList) -> str:
    """Publish each key (`keys/<fingerprint>.pem`) and the list itself, a new numbered version
    whenever it changed (the archive is write-once); the list's key."""
    for key in keys.keys:
        pem_key = f"keys/{key.fingerprint.replace(':', '-')}.pem"
        if not archive.exists(pem_key):
            archive.put_bytes(pem_key, key.public_pem)
    published = sorted(o.key for o in archive.list_objects(_KEY_LISTS))
    body = keys.to_json()
    if published and _read(archive, published[-1]) == body:
        return published[-1]
    version = f"{_KEY_LISTS}signing-keys-{len(published) + 1:04d}.json"
    archive.put_bytes(version, body)
    return version


def latest_key_list(store: ObjectStore) -> tuple[str, KeyList] | None:
    """The newest key list published in the archive, if any."""
    published = sorted(o.key for o in store.list_objects(_KEY_LISTS))
    if not published:
        return None
    return published[-1], KeyList.from_json(_read(store, published[-1]), published[-1])


def _listing(store: ObjectStore, prefix: str) -> list[str]:
    return [o.key for o in store.list_objects(prefix) if not o.key.endswith(".sig")]


def _typed(key: str, document: dict[str, Any], digest: str) -> RecordedEvent:
    """An event of the chain with its typed data: an unknown or malformed kind is an error."""
    try:
        return RecordedEvent(
            key=key,
            seq=document["seq"],
            kind=document["kind"],
            once=document.get("once"),
            at=datetime.fromisoformat(document["at"]),
            sha256=digest,
            data=parse_event_data(document["kind"], document["data"], where=key),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise IntegrityError(f"{key}: not an audit event of this format ({error})") from None


def compacted_page_key(addendum_key: str) -> str:
    """The page showing the certificate with its addendum, beside the first page."""
    return "reports/" + addendum_key.removeprefix("certificates/").removesuffix(".json") + ".html"


def _check_addenda(
    store: ObjectStore,
    keys: KeyList,
    events: list[RecordedEvent],
    certificate: dict[str, Any],
    certificate_sha256: str,
    report: ArchiveReport,
) -> None:
    """Each residue addendum the chain records: signed, the bytes the chain names, and
    completing this certificate (its digest); its page, if any, showing both."""
    for recorded in (e.data for e in events if isinstance(e.data, ResidueCompacted)):
        if not store.exists(recorded.addendum):
            raise IntegrityError(f"the chain records an addendum, {recorded.addendum} is missing")
        body = _signed(store, recorded.addendum, keys, report, named=True)
        if hashlib.sha256(body).hexdigest() != recorded.addendum_sha256:
            raise IntegrityError(f"{recorded.addendum}: differs from the one the chain records")
        addendum = json.loads(body)
        if addendum.get("certificate_sha256") != certificate_sha256:
            raise IntegrityError(f"{recorded.addendum}: completes another certificate")
        page_key = compacted_page_key(recorded.addendum)
        if store.exists(page_key):
            page = _signed(store, page_key, keys, report).decode()
            if page != render_html(certificate, addendum):
                raise IntegrityError(f"{page_key}: does not show the certificate and addendum")
            report.reports += 1
        report.addenda += 1


def _check_certificate(
    store: ObjectStore,
    keys: KeyList,
    case_prefix: str,
    events: list[RecordedEvent],
    report: ArchiveReport,
) -> None:
    """The archived certificate and report must be exactly what the chain recorded."""
    position = next(
        (i for i, e in enumerate(events) if isinstance(e.data, CertificateRecorded)), None
    )
    if position is None:
        return  # the case is not destroyed yet
    recorded = events[position].data
    assert isinstance(recorded, CertificateRecorded)
    certificate = recorded.certificate
    certified = next((e.data for e in events if isinstance(e.data, Certified)), None)
    tenant_case = case_prefix.removeprefix("cases/")
    key = f"certificates/{tenant_case}.json"
    if not store.exists(key):
        raise IntegrityError(f"{case_prefix}: the chain records a certificate but {key} is missing")
    body = _signed(store, key, keys, report, named=True)
    if json.loads(body) != certificate:
        raise IntegrityError(f"{key}: differs from the certificate recorded in the audit chain")
    head_before = events[position - 1].sha256 if position else GENESIS
    if certificate["audit_chain_head"] != head_before:
        raise IntegrityError(f"{key}: its audit_chain_head is not the chain's head before it")
    if certified and certified.certificate_sha256 != hashlib.sha256(body).hexdigest():
        raise IntegrityError(f"{key}: its sha256 differs from the 'certified' event's")
    tenant, _, case_id = tenant_case.partition("/")
    before = CaseState.of(CaseRef(tenant=tenant, case_id=case_id), events[:position])
    _check_facts(key, certificate, before)
    report.certificates += 1
    _check_addenda(store, keys, events, certificate, hashlib.sha256(body).hexdigest(), report)
    html_key = f"reports/{tenant_case}.html"
    if store.exists(html_key):
        page = _signed(store, html_key, keys, report).decode()
        # A page an earlier version wrote is compared with that version's rendering.
        if page != (render_html(certificate) if MARK in page else render_v1(certificate)):
            raise IntegrityError(f"{html_key}: does not show the certificate's facts")
        report.reports += 1


def _check_facts(key: str, certificate: dict[str, Any], before: CaseState) -> None:
    """Each claim of the certificate that the chain also records must agree with it."""
    for location in certificate["locations"]:
        event = before.destroyed.get(location["location"])
        if event is None:
            raise IntegrityError(f"{key}: no destruction of {location['location']} in the chain")
        for name in ("items_before", "bytes_before", "items_removed"):
            if getattr(event, name) != location[name]:
                raise IntegrityError(
                    f"{key}: {location['location']}.{name} is {location[name]}, the chain "
                    f"recorded {getattr(event, name)}"
                )
    if before.inventory and before.inventory.rows != certificate["inventory_rows"]:
        raise IntegrityError(f"{key}: inventory_rows differs from the chain's inventory")
    acknowledged_at = before.acknowledged_at
    if acknowledged_at and acknowledged_at != datetime.fromisoformat(
        certificate["acknowledged_at"]
    ):
        raise IntegrityError(f"{key}: acknowledged_at differs from the chain's acknowledgement")
