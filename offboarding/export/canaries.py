"""The tenant's canaries: values sampled from its data at inventory (the tenant is frozen), to
look for later in the files its deletion left behind (offboarding/destruction/compaction.py).

They are tenant data, so they never reach the trail, a log or the archive: they are sealed
with AES-256-GCM under a key of the residue keyring (one per tenant, wrapped by the KEK, kept
apart from the tenant's data key because the canaries must outlive the destruction until the
compaction's scan), in `<home>/residue/<tenant>/<case>.sealed`. The scan destroys the key and
the file: from then on the canaries cannot be read by anyone. The trail records how many
there are and the key's id.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from offboarding.core.config import Settings
from offboarding.core.records import CaseRef
from offboarding.core.secrets import write_private
from offboarding.keys.keyring import KeyState, LocalKeyring
from offboarding.locations import Capability, capable, get_location
from offboarding.locations.base import Canary, Residual
from offboarding.trail import events
from offboarding.trail.audit import AuditTrail

__all__ = ["keep_canaries", "read_canaries", "residue_keyring", "shred_canaries"]


def residue_keyring(settings: Settings) -> LocalKeyring:
    """The keys sealing canaries: the tenant's own, beside (not instead of) its data key."""
    return LocalKeyring(settings.root / "residue-keyring", settings.keys_dir / "kek.key")


def _path(settings: Settings, case: CaseRef) -> Path:
    return settings.root / "residue" / case.tenant / f"{case.case_id}.sealed"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def keep_canaries(settings: Settings, case: CaseRef) -> dict[str, int]:
    """Sample the canaries of every system that leaves residue, seal them, record their count
    in the case's trail. Once per case: a rerun keeps the first sample."""
    path = _path(settings, case)
    trail = AuditTrail.open(settings, case)
    kept = [e.data for e in trail.recorded() if isinstance(e.data, events.CanariesKept)]
    if kept or path.exists():
        return dict(kept[0].systems) if kept else {}
    sampled: dict[str, list[Canary]] = {}
    for name in capable(settings, Capability.RESIDUE):
        location = get_location(name, settings)
        assert isinstance(location, Residual)
        sampled[name] = location.canaries(case)
    keyring = residue_keyring(settings)
    keyring.create(case.tenant)
    key_id, key = keyring.data_key(case.tenant)
    body = json.dumps({
        name: [{"value": _b64(c.value), "table": c.table, "column": c.column, "binary": c.binary}
               for c in canaries]
        for name, canaries in sampled.items()
    }).encode()  # fmt: skip
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, body, case.case_id.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"key_id": key_id, "nonce": _b64(nonce), "sealed": _b64(sealed)}
    write_private(path, json.dumps(document).encode())
    counts = {name: len(canaries) for name, canaries in sampled.items()}
    trail.record(events.CanariesKept(systems=counts, sealed_with=key_id), once="canaries")
    return counts


def read_canaries(settings: Settings, case: CaseRef) -> dict[str, list[Canary]]:
    """The case's canaries per system (empty where none were kept, or they were shredded)."""
    path = _path(settings, case)
    if not path.exists():
        return {}
    document = json.loads(path.read_text())
    _, key = residue_keyring(settings).data_key(case.tenant)
    body = AESGCM(key).decrypt(
        base64.b64decode(document["nonce"]),
        base64.b64decode(document["sealed"]),
        case.case_id.encode(),
    )
    return {
        name: [
            Canary(base64.b64decode(c["value"]), c["table"], c["column"], c["binary"])
            for c in canaries
        ]
        for name, canaries in json.loads(body).items()
    }


def shred_canaries(settings: Settings, case: CaseRef) -> KeyState:
    """Destroy the key sealing the canaries, then their file: nothing reads them again."""
    state = residue_keyring(settings).destroy(case.tenant)
    _path(settings, case).unlink(missing_ok=True)
    return state
