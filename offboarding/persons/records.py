"""Signed records of what was done about one person, one retention rule or a former client's
contacts, in the audit archive, chained per tenant (offboarding/trail/records.py).

Keys: `persons/<tenant>/<request>/<name>.json` for a request's answer, closing, attestation or
certificate; `retention/<tenant>/<run>.json` and `retention/<tenant>/rules/...` for the client's
retention rules; `contacts/<tenant>/...` for contacts forgotten. Each is a typed model, signed
and dated like the cases' events, so `offboard audit verify` checks each with the key valid at
that date and walks each tenant's chain. They hold references, counts and digests: the person
appears only as a keyed pseudonym (`hmac-sha256:` under a key kept in the ledger, forgotten
with the tenant's other keys).
"""

from __future__ import annotations

from typing import Any

from offboarding.core.config import Settings
from offboarding.core.signing import load_key_list
from offboarding.evidence.archive import publish_key_list
from offboarding.stores import open_store
from offboarding.trail.records import TenantRecordModel, archive_record, read_record

__all__ = ["archive_signed", "read_signed"]


def archive_signed(settings: Settings, key: str, record: TenantRecordModel) -> dict[str, Any]:
    """Sign `record` and write it at `key`, once, named in its tenant's chain; publish the key
    list it is checked against. A rerun finds the record already there and returns it."""
    document = archive_record(settings, key, record)
    publish_key_list(
        open_store(settings.store_url("archive"), write_once=True),
        load_key_list(settings.keys_dir),
    )
    return document


def read_signed(settings: Settings, key: str) -> dict[str, Any]:
    """A record of the archive, its signature checked with the operator's keys."""
    return read_record(settings, key)
