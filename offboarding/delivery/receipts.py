"""Download receipts: every download of a bundle part through the link endpoint, on the record.

Each receipt is a small signed document in the audit archive, one per download, beside the
case's chain rather than in it: the link endpoint writes receipts while the case's own steps
write the chain, and a chain has one writer at a time.

    downloads/<tenant>/<case>/<time>-<random>.json   (and .sig, Ed25519)

A receipt holds the part's name, the bytes sent (or, for Cloud Storage, the size of the object
the client was sent to), whether it completed, the time and the client's address as a pseudonym
of the case (offboarding/people.py: an HMAC-SHA256 under the case's own key, which goes with the
contact details; the same address gives the same pseudonym, and nobody without the key can test
a guess). Never the address itself.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from offboarding.core.canonical import compact_json
from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer, load_key_list
from offboarding.people import pseudonym
from offboarding.stores import open_store

__all__ = [
    "DownloadReceipt",
    "downloads",
    "fully_downloaded",
    "receipt_prefix",
    "record_download",
]


class DownloadReceipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str
    case_id: str
    part: str
    bytes: int
    size: int
    complete: bool
    via: Literal["stream", "redirect"]
    at: datetime
    client: str  # the client's address as a pseudonym of the case
    signing_key: str | None = None  # the key that signed it (None: receipts before rotation)


def receipt_prefix(case: CaseRef) -> str:
    return f"downloads/{case.tenant}/{case.case_id}/"


def record_download(
    settings: Settings,
    case: CaseRef,
    *,
    part: str,
    sent: int,
    size: int,
    via: Literal["stream", "redirect"],
    address: str,
) -> DownloadReceipt:
    """Sign and archive one download's receipt."""
    receipt = DownloadReceipt(
        tenant=case.tenant, case_id=case.case_id, part=part, bytes=sent, size=size,
        complete=sent == size, via=via, at=datetime.now(UTC),
        client=pseudonym(settings, case, address or "unknown"),
        signing_key=Signer.load_or_create(settings.keys_dir).fingerprint,
    )  # fmt: skip
    body = compact_json(receipt.model_dump(mode="json"))
    archive = open_store(settings.store_url("archive"), write_once=True)
    key = f"{receipt_prefix(case)}{receipt.at:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.json"
    signer = Signer.load_or_create(settings.keys_dir)
    archive.put_bytes(key + ".sig", signer.sign(body))
    archive.put_bytes(key, body)
    return receipt


def downloads(settings: Settings, case: CaseRef) -> list[DownloadReceipt]:
    """Every receipt of the case, oldest first, each signature checked."""
    archive = open_store(settings.store_url("archive"), write_once=True)
    keys = load_key_list(settings.keys_dir)
    found: list[DownloadReceipt] = []
    for info in archive.list_objects(receipt_prefix(case)):
        if info.key.endswith(".sig"):
            continue
        with archive.open_read(info.key) as body, archive.open_read(info.key + ".sig") as sig:
            data, signature = body.read(), sig.read()
        receipt = DownloadReceipt.model_validate_json(data)
        keys.verify(data, signature, info.key, signing_key=receipt.signing_key, at=receipt.at)
        found.append(receipt)
    return sorted(found, key=lambda r: r.at)


def fully_downloaded(parts: list[str], receipts: list[DownloadReceipt]) -> bool:
    """Every part (by name) has at least one complete download on record."""
    done = {r.part for r in receipts if r.complete}
    return bool(parts) and all(part in done for part in parts)
