"""Signed records of what was done about one person or one retention rule, in the audit archive.

Each is a canonical JSON document beside its Ed25519 signature, written once (the archive may
be retention-locked): `persons/<tenant>/<request>/<name>.json` for a request's answer or
certificate, `retention/<tenant>/<run>.json` for a retention run. Like the cases' events they
name their signing key and carry their date (`at`), so `offboard audit verify` checks each
with the key valid at that date. They hold references, counts and digests: the person appears
only as a keyed pseudonym (`hmac-sha256:` under a key kept in the ledger, forgotten with the
tenant's other keys).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from offboarding.core.canonical import canonical_json
from offboarding.core.config import Settings
from offboarding.core.signing import Signer, load_key_list
from offboarding.evidence.archive import publish_key_list
from offboarding.stores import open_store

__all__ = ["archive_signed", "read_signed"]


def archive_signed(settings: Settings, key: str, document: dict[str, Any]) -> dict[str, Any]:
    """Sign `document` (adding `at` and `signing_key`) and write it at `key`, once. A rerun
    finds the record already there and returns it unchanged, so evidence is never rewritten."""
    archive = open_store(settings.store_url("archive"), write_once=True)
    if archive.exists(key):
        return read_signed(settings, key)
    signer = Signer.load_or_create(settings.keys_dir)
    document = {
        **document,
        "at": datetime.now(UTC).isoformat(),
        "signing_key": signer.fingerprint,
    }
    body = canonical_json(document)
    if not archive.exists(key + ".sig"):
        archive.put_bytes(key + ".sig", signer.sign(body))
    archive.put_bytes(key, body)
    publish_key_list(archive, load_key_list(settings.keys_dir))
    return document


def read_signed(settings: Settings, key: str) -> dict[str, Any]:
    """A record of the archive, its signature checked with the operator's keys."""
    archive = open_store(settings.store_url("archive"))
    with archive.open_read(key) as handle:
        body = handle.read()
    with archive.open_read(key + ".sig") as handle:
        signature = handle.read()
    document: dict[str, Any] = json.loads(body)
    keys = load_key_list(settings.keys_dir)
    keys.verify(body, signature, key, signing_key=document.get("signing_key"))
    return document
