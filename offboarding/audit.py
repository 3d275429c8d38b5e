"""The case's audit trail: signed, hash-chained events in the write-once archive.

Each event names the previous event's sha256, so removing or editing one breaks the chain;
each is signed, so it cannot be forged without the key. Events carry references, counts and
digests, never tenant data (the archive may be retention-locked: what goes in stays).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from offboarding.config import Settings
from offboarding.errors import IntegrityError
from offboarding.faults import crash_point
from offboarding.records import CaseRef
from offboarding.signing import Signer, verify_signature
from offboarding.store import ObjectStore, open_store

__all__ = ["GENESIS", "AuditEvent", "AuditTrail", "verify_chain"]

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    key: str
    body: bytes
    signature: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def case_prefix(case: CaseRef) -> str:
    return f"cases/{case.tenant}/{case.case_id}/"


class AuditTrail:
    def __init__(self, settings: Settings, case: CaseRef, signer: Signer) -> None:
        self.case = case
        self.signer = signer
        self.store: ObjectStore = open_store(settings.store_url("archive"), write_once=True)
        self.prefix = case_prefix(case) + "events/"

    def events(self) -> list[AuditEvent]:
        keys = sorted(
            o.key for o in self.store.list_objects(self.prefix) if o.key.endswith(".json")
        )
        result = []
        for key in keys:
            with self.store.open_read(key) as body, self.store.open_read(key + ".sig") as sig:
                result.append(AuditEvent(key, body.read(), sig.read()))
        return result

    def head(self) -> str:
        events = self.events()
        return events[-1].sha256 if events else GENESIS

    def record(self, kind: str, data: dict[str, Any], *, once: str | None = None) -> AuditEvent:
        """Append an event. With `once`, an event of that name is written at most once, so a
        retried or resumed step does not record itself twice."""
        events = self.events()
        if once:
            for event in events:
                if event.document.get("once") == once:
                    return event
        body = json.dumps(
            {
                "seq": len(events),
                "kind": kind,
                "once": once,
                "at": datetime.now(UTC).isoformat(),
                "tenant": self.case.tenant,
                "case_id": self.case.case_id,
                "prev": events[-1].sha256 if events else GENESIS,
                "data": data,
                "signing_key": self.signer.fingerprint,
            },
            sort_keys=True,
            default=str,
        ).encode()
        key = f"{self.prefix}{len(events):05d}-{kind}.json"
        attempt = 0
        while self.store.exists(key + ".sig"):
            # A crash between an earlier signature and its body: that signature is left as it
            # is (its body cannot be rebuilt, and nothing unsigned is ever signed later); the
            # event takes another name with the same sequence number.
            attempt += 1
            key = f"{self.prefix}{len(events):05d}-{kind}-retry{attempt}.json"
        self.store.put_bytes(key + ".sig", self.signer.sign(body))
        crash_point("audit:signature-written")
        self.store.put_bytes(key, body)
        return AuditEvent(key, body, self.signer.sign(body))

    def find(self, kind: str) -> list[dict[str, Any]]:
        return [e.document for e in self.events() if e.document["kind"] == kind]


def verify_chain(events: list[AuditEvent], public_key: Ed25519PublicKey) -> str:
    """Check every signature and link; return the head digest."""
    previous = GENESIS
    for seq, event in enumerate(events):
        if not verify_signature(public_key, event.body, event.signature):
            raise IntegrityError(f"audit event {event.key}: signature does not match")
        document = event.document
        if document["seq"] != seq or document["prev"] != previous:
            raise IntegrityError(
                f"audit event {event.key}: chain broken (expected seq {seq} after {previous[:12]})"
            )
        previous = event.sha256
    return previous
