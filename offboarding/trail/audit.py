"""The case's audit trail: signed, hash-chained events in the write-once archive.

Each event names the previous event's sha256, so removing or editing one breaks the chain;
each is signed, so it cannot be forged without the key. Events carry references, counts and
digests, never tenant data (the archive may be retention-locked: what goes in stays).

A trail object reads each event once: later calls list the case's keys and read only the
events written since (by this process or another), so recording N events costs N reads, not
N squared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from offboarding.core.canonical import compact_json
from offboarding.core.config import Settings
from offboarding.core.errors import IntegrityError
from offboarding.core.faults import crash_point
from offboarding.core.records import CaseRef
from offboarding.core.signing import KeyList, Signer
from offboarding.stores import ObjectStore, open_store
from offboarding.trail.events import EventData, RecordedEvent, parse_event_data
from offboarding.trail.state import GENESIS, CaseState

__all__ = ["GENESIS", "AuditEvent", "AuditTrail", "case_prefix", "verify_chain"]

_Data = TypeVar("_Data", bound=EventData)


@dataclass(frozen=True)
class AuditEvent:
    """One event as stored: its key, its signed body and its signature."""

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

    def typed(self) -> RecordedEvent:
        document = self.document
        return RecordedEvent(
            key=self.key,
            seq=document["seq"],
            kind=document["kind"],
            once=document.get("once"),
            at=datetime.fromisoformat(document["at"]),
            sha256=self.sha256,
            data=parse_event_data(document["kind"], document["data"], where=self.key),
        )


def case_prefix(case: CaseRef) -> str:
    return f"cases/{case.tenant}/{case.case_id}/"


class AuditTrail:
    def __init__(self, settings: Settings, case: CaseRef, signer: Signer) -> None:
        self.case = case
        self.signer = signer
        self.keys_dir = settings.keys_dir
        self.store: ObjectStore = open_store(settings.store_url("archive"), write_once=True)
        self.prefix = case_prefix(case) + "events/"
        self._events: list[AuditEvent] = []
        self._typed: list[RecordedEvent] = []

    @classmethod
    def open(cls, settings: Settings, case: CaseRef) -> AuditTrail:
        return cls(settings, case, Signer.load_or_create(settings.keys_dir))

    def events(self) -> list[AuditEvent]:
        """Every event, oldest first; only those not read before are fetched."""
        keys = sorted(
            o.key for o in self.store.list_objects(self.prefix) if o.key.endswith(".json")
        )
        known = [event.key for event in self._events]
        if keys[: len(known)] != known:  # cannot happen in a write-once store; reread if it does
            self._events, self._typed = [], []
            known = []
        for key in keys[len(known) :]:
            with self.store.open_read(key) as body, self.store.open_read(key + ".sig") as sig:
                self._events.append(AuditEvent(key, body.read(), sig.read()))
        return list(self._events)

    def recorded(self) -> list[RecordedEvent]:
        """Every event with its typed data; an unknown kind raises IntegrityError."""
        events = self.events()
        self._typed += [event.typed() for event in events[len(self._typed) :]]
        return list(self._typed)

    def of(self, model: type[_Data]) -> list[_Data]:
        """The data of every event of one kind, oldest first."""
        return [e.data for e in self.recorded() if isinstance(e.data, model)]

    def state(self) -> CaseState:
        return CaseState.of(self.case, self.recorded())

    def head(self) -> str:
        events = self.events()
        return events[-1].sha256 if events else GENESIS

    def record(self, data: EventData, *, once: str | None = None) -> RecordedEvent:
        """Append an event. With `once`, an event of that name is written at most once, so a
        retried or resumed step does not record itself twice: the first one is returned."""
        recorded = self.recorded()
        if once:
            for event in recorded:
                if event.once == once:
                    return event
        seq = len(recorded)
        # The key is read again for each event: a long step must not sign with a key that was
        # rotated (retired) while it ran.
        self.signer = Signer.load_or_create(self.keys_dir)
        body = compact_json(
            {
                "seq": seq,
                "kind": data.kind,
                "once": once,
                "at": datetime.now(UTC).isoformat(),
                "tenant": self.case.tenant,
                "case_id": self.case.case_id,
                "prev": recorded[-1].sha256 if recorded else GENESIS,
                "data": data.model_dump(mode="json"),
                "signing_key": self.signer.fingerprint,
            }
        )
        key = f"{self.prefix}{seq:05d}-{data.kind}.json"
        attempt = 0
        while self.store.exists(key + ".sig"):
            # A crash between an earlier signature and its body: that signature is left as it
            # is (its body cannot be rebuilt, and nothing unsigned is ever signed later); the
            # event takes another name with the same sequence number.
            attempt += 1
            key = f"{self.prefix}{seq:05d}-{data.kind}-retry{attempt}.json"
        signature = self.signer.sign(body)
        self.store.put_bytes(key + ".sig", signature)
        crash_point("audit:signature-written")
        self.store.put_bytes(key, body)
        stored = AuditEvent(key, body, signature)
        self._events.append(stored)
        self._typed.append(stored.typed())
        return self._typed[-1]


def verify_chain(events: list[AuditEvent], public_key: Ed25519PublicKey | KeyList) -> str:
    """Check every signature (by the key each event names, within its period) and link;
    return the head digest."""
    keys = public_key if isinstance(public_key, KeyList) else KeyList.of(public_key)
    previous = GENESIS
    for seq, event in enumerate(events):
        document = event.document
        keys.verify(
            event.body, event.signature, f"audit event {event.key}",
            signing_key=document.get("signing_key"), at=datetime.fromisoformat(document["at"]),
        )  # fmt: skip
        if document["seq"] != seq or document["prev"] != previous:
            raise IntegrityError(
                f"audit event {event.key}: chain broken (expected seq {seq} after {previous[:12]})"
            )
        previous = event.sha256
    return previous
