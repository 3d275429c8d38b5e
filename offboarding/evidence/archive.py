"""The archive an auditor reads, and the offline check of everything in it.

    render_certificate_html   the human-readable report: the same facts as the certificate
    verify_archive            every signature, every case's hash chain, and that each
                              certificate and report agrees with its chain; names the first
                              thing that does not

The archive holds, per case: `cases/<tenant>/<case>/events/NNNNN-<kind>.json` (+ `.sig`),
`certificates/<tenant>/<case>.json` (+ `.sig`), `reports/<tenant>/<case>.html` (+ `.sig`),
and `keys/<fingerprint>.pem`, the public keys that signed them.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from offboarding.core.errors import IntegrityError
from offboarding.core.signing import verify_signature
from offboarding.stores import ObjectStore

__all__ = ["ArchiveReport", "render_certificate_html", "verify_archive"]

_GENESIS = "0" * 64


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "<br>".join(
            f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in value.items()
        )
    if isinstance(value, list):
        return "<br>".join(_cell(v) for v in value) or "none"
    return html.escape("" if value is None else str(value))


def render_certificate_html(certificate: dict[str, Any]) -> str:
    """A page a person can read and print, generated from (and signed beside) the JSON."""
    scalars = {k: v for k, v in certificate.items() if k not in ("locations", "legal_holds")}
    rows = "".join(
        f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_cell(v)}</td></tr>"
        for k, v in scalars.items()
    )
    columns = ["location", "media", "method", "technique", "items_before", "bytes_before",
               "items_removed", "verification_method", "verification_result", "remaining",
               "verification", "pending_until", "verified_at"]  # fmt: skip
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(loc.get(c))}</td>" for c in columns) + "</tr>"
        for loc in certificate["locations"]
    )
    holds = "".join(
        f"<li>{html.escape(h['kind'])} at {html.escape(h['at'])}</li>"
        for h in certificate["legal_holds"]
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Certificate of destruction {html.escape(certificate['case_id'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}"
        "</style></head><body>"
        f"<h1>Certificate of destruction</h1><p>Tenant <b>{html.escape(certificate['tenant'])}"
        f"</b>, case {html.escape(certificate['case_id'])}. The signed JSON certificate beside "
        "this page is authoritative; this page shows the same facts.</p>"
        f"<table>{rows}</table><h2>Per location</h2><table><tr>{head}</tr>{body}</table>"
        f"<h2>Legal holds</h2><ul>{holds or '<li>none</li>'}</ul></body></html>\n"
    )


@dataclass
class ArchiveReport:
    cases: int = 0
    events: int = 0
    certificates: int = 0
    reports: int = 0
    keys: list[str] = field(default_factory=list)


def _read(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as handle:
        return handle.read()


def _signed(store: ObjectStore, key: str, public_key: Ed25519PublicKey) -> bytes:
    body = _read(store, key)
    if not store.exists(key + ".sig"):
        raise IntegrityError(f"{key}: its signature ({key}.sig) is missing")
    if not verify_signature(public_key, body, _read(store, key + ".sig")):
        raise IntegrityError(f"{key}: the signature does not match its content")
    return body


def verify_archive(store: ObjectStore, public_key: Ed25519PublicKey) -> ArchiveReport:
    """Check the whole archive offline; raise IntegrityError naming the first problem."""
    report = ArchiveReport()
    keys = sorted(k for k in _listing(store, "cases/") if k.endswith(".json"))
    chains: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
    for key in keys:
        case_prefix = key.rsplit("/events/", 1)[0]
        body = _signed(store, key, public_key)
        chains.setdefault(case_prefix, []).append(
            (key, json.loads(body), hashlib.sha256(body).hexdigest())
        )
    for case_prefix, events in chains.items():
        previous = _GENESIS
        for number, (key, document, digest) in enumerate(events):
            if document.get("seq") != number:
                raise IntegrityError(f"{key}: event {number} of {case_prefix} is missing or moved")
            if document.get("prev") != previous:
                raise IntegrityError(f"{key}: does not follow the previous event (chain broken)")
            previous = digest
        report.cases += 1
        report.events += len(events)
        _check_certificate(store, public_key, case_prefix, events, report)
    for key in sorted(o for o in _listing(store, "certificates/") if o.endswith(".json")):
        tenant_case = key.removeprefix("certificates/").removesuffix(".json")
        if f"cases/{tenant_case}" not in chains:
            raise IntegrityError(f"{key}: no audit chain for this certificate")
    report.keys = sorted(o for o in _listing(store, "keys/") if o.endswith(".pem"))
    return report


def _listing(store: ObjectStore, prefix: str) -> list[str]:
    return [o.key for o in store.list_objects(prefix) if not o.key.endswith(".sig")]


def _check_certificate(
    store: ObjectStore,
    public_key: Ed25519PublicKey,
    case_prefix: str,
    events: list[tuple[str, dict[str, Any], str]],
    report: ArchiveReport,
) -> None:
    """The archived certificate and report must be exactly what the chain recorded."""
    recorded = [(doc, digest) for _, doc, digest in events if doc["kind"] == "certificate"]
    certified = [doc for _, doc, _ in events if doc["kind"] == "certified"]
    if not recorded:
        return  # the case is not destroyed yet
    tenant_case = case_prefix.removeprefix("cases/")
    certificate = recorded[0][0]["data"]["certificate"]
    key = f"certificates/{tenant_case}.json"
    if not store.exists(key):
        raise IntegrityError(f"{case_prefix}: the chain records a certificate but {key} is missing")
    body = _signed(store, key, public_key)
    if json.loads(body) != certificate:
        raise IntegrityError(f"{key}: differs from the certificate recorded in the audit chain")
    position = next(i for i, (_, doc, _) in enumerate(events) if doc["kind"] == "certificate")
    head_before = events[position - 1][2] if position else _GENESIS
    if certificate["audit_chain_head"] != head_before:
        raise IntegrityError(f"{key}: its audit_chain_head is not the chain's head before it")
    if certified and certified[0]["data"]["certificate_sha256"] != hashlib.sha256(body).hexdigest():
        raise IntegrityError(f"{key}: its sha256 differs from the 'certified' event's")
    _check_facts(key, certificate, [doc for _, doc, _ in events[:position]])
    report.certificates += 1
    html_key = f"reports/{tenant_case}.html"
    if store.exists(html_key):
        page = _signed(store, html_key, public_key)
        if page.decode() != render_certificate_html(certificate):
            raise IntegrityError(f"{html_key}: does not show the certificate's facts")
        report.reports += 1


def _check_facts(key: str, certificate: dict[str, Any], before: list[dict[str, Any]]) -> None:
    """Each claim of the certificate that the chain also records must agree with it."""
    destroyed = {
        d["data"]["location"]: d["data"] for d in before if d["kind"] == "location-destroyed"
    }
    for location in certificate["locations"]:
        event = destroyed.get(location["location"])
        if event is None:
            raise IntegrityError(f"{key}: no destruction of {location['location']} in the chain")
        for name in ("items_before", "bytes_before", "items_removed"):
            if event[name] != location[name]:
                raise IntegrityError(
                    f"{key}: {location['location']}.{name} is {location[name]}, the chain "
                    f"recorded {event[name]}"
                )
    inventory = [d["data"] for d in before if d["kind"] == "inventory"]
    if inventory and sum(inventory[-1].get("tables", {}).values()) != certificate["inventory_rows"]:
        raise IntegrityError(f"{key}: inventory_rows differs from the chain's inventory")
    acknowledged = [d for d in before if d["kind"] in ("acknowledged", "deemed-delivered")]
    if acknowledged and acknowledged[-1]["data"]["at"] != certificate["acknowledged_at"]:
        ack_chain, ack_cert = acknowledged[-1]["data"]["at"], certificate["acknowledged_at"]
        if _instant(ack_chain) != _instant(ack_cert):
            raise IntegrityError(f"{key}: acknowledged_at differs from the chain's acknowledgement")


def _instant(value: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(value).isoformat()
