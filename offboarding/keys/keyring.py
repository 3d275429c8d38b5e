"""Per-tenant data keys, wrapped by a key-encryption key, and their destruction (crypto-shredding).

    create(tenant)      a random AES-256 data key, stored only wrapped by the KEK, plus a small
                        canary ciphertext made with it (kept apart, and kept after destruction)
    data_key(tenant)    the unwrapped key, for encrypting or reading the tenant's backups
    destroy(tenant)     destroy the wrapped key; from then on nothing the key sealed can be read
    state / canary      the evidence: key state with dates, and whether the canary still decrypts

`LocalKeyring` is the embedded default: the KEK is a 256-bit secret in the keys directory, the
wrapped keys live in `<home>/keyring/`. In production the same interface maps onto Cloud KMS
(docs/backups.md): one CryptoKey per tenant, `destroy` = destroy every key version, whose
scheduled destruction (30 days by default) is reported as `effective_at`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import ConfigurationError, IntegrityError, KeyDestroyedError
from offboarding.core.secrets import load_or_create_secret, write_private

__all__ = ["CanaryResult", "KeyState", "Keyring", "LocalKeyring", "open_keyring"]

_CANARY_TEXT = b"tenant-offboarding canary: if you can read this, the key still exists"


@dataclass(frozen=True)
class KeyState:
    tenant: str
    key_id: str | None
    state: Literal["enabled", "destroyed", "absent"]
    created_at: datetime | None = None
    destroyed_at: datetime | None = None
    effective_at: datetime | None = None  # when destruction takes effect (KMS delay)


@dataclass(frozen=True)
class CanaryResult:
    present: bool  # a canary was made when the key was created
    decrypts: bool


class Keyring(Protocol):
    def create(self, tenant: str) -> KeyState: ...

    def data_key(self, tenant: str) -> tuple[str, bytes]: ...

    def destroy(self, tenant: str) -> KeyState: ...

    def state(self, tenant: str) -> KeyState: ...

    def canary(self, tenant: str) -> CanaryResult: ...

    def tenants(self) -> list[str]: ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class LocalKeyring:
    def __init__(self, root: Path, kek_path: Path, destroy_delay: timedelta = timedelta(0)):
        self.root = root
        self.kek_path = kek_path
        self.destroy_delay = destroy_delay

    def _kek(self) -> AESGCM:
        return AESGCM(load_or_create_secret(self.kek_path, 32))

    def _paths(self, tenant: str) -> tuple[Path, Path, Path]:
        validate_tenant_id(tenant)
        return (
            self.root / f"{tenant}.key.json",
            self.root / f"{tenant}.canary.json",
            self.root / f"{tenant}.destroyed.json",
        )

    def create(self, tenant: str) -> KeyState:
        key_path, canary_path, tombstone = self._paths(tenant)
        if tombstone.exists():
            raise KeyDestroyedError(
                f"tenant {tenant!r}: its data key was destroyed; a destroyed tenant gets no new "
                "key (and so no new backup)"
            )
        if key_path.exists():
            return self.state(tenant)
        key_id = f"{tenant}-{secrets.token_hex(6)}"
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        wrapped = self._kek().encrypt(nonce, data_key, key_id.encode())
        created = datetime.now(UTC).isoformat()
        record = {
            "key_id": key_id,
            "created_at": created,
            "nonce": _b64(nonce),
            "wrapped": _b64(wrapped),
            "algorithm": "AES-256-GCM data key, wrapped with AES-256-GCM by the KEK",
        }
        if not write_private(key_path, json.dumps(record).encode()):
            return self.state(tenant)  # another process created it first: use theirs
        canary_nonce = os.urandom(12)
        canary = {
            "key_id": key_id,
            "created_at": created,
            "nonce": _b64(canary_nonce),
            "ciphertext": _b64(AESGCM(data_key).encrypt(canary_nonce, _CANARY_TEXT, None)),
        }
        write_private(canary_path, json.dumps(canary).encode())
        return self.state(tenant)

    def data_key(self, tenant: str) -> tuple[str, bytes]:
        key_path, _, tombstone = self._paths(tenant)
        if tombstone.exists() or not key_path.exists():
            raise KeyDestroyedError(
                f"tenant {tenant!r} has no usable data key "
                f"({'destroyed' if tombstone.exists() else 'never created'})"
            )
        record = json.loads(key_path.read_text())
        try:
            key = self._kek().decrypt(
                base64.b64decode(record["nonce"]),
                base64.b64decode(record["wrapped"]),
                record["key_id"].encode(),
            )
        except InvalidTag:
            raise IntegrityError(
                f"the wrapped data key of {tenant!r} does not open with this installation's "
                f"key-encryption key ({self.kek_path}): wrong KEK, or the key file was altered"
            ) from None
        return str(record["key_id"]), key

    def destroy(self, tenant: str) -> KeyState:
        key_path, _, tombstone = self._paths(tenant)
        if tombstone.exists():
            return self.state(tenant)  # idempotent: already destroyed
        key_id = json.loads(key_path.read_text())["key_id"] if key_path.exists() else None
        now = datetime.now(UTC)
        write_private(
            tombstone,
            json.dumps({"key_id": key_id, "destroyed_at": now.isoformat(),
                        "effective_at": (now + self.destroy_delay).isoformat()}).encode(),
        )  # fmt: skip
        if key_path.exists():
            # Overwrite before unlinking: a best effort on file systems that write in place.
            size = key_path.stat().st_size
            with key_path.open("r+b") as handle:
                handle.write(os.urandom(size))
                handle.flush()
                os.fsync(handle.fileno())
            key_path.unlink()
        return self.state(tenant)

    def state(self, tenant: str) -> KeyState:
        key_path, _, tombstone = self._paths(tenant)
        if tombstone.exists():
            gone = json.loads(tombstone.read_text())
            return KeyState(
                tenant, gone["key_id"], "destroyed",
                destroyed_at=datetime.fromisoformat(gone["destroyed_at"]),
                effective_at=datetime.fromisoformat(gone["effective_at"]),
            )  # fmt: skip
        if key_path.exists():
            record = json.loads(key_path.read_text())
            return KeyState(
                tenant, record["key_id"], "enabled",
                created_at=datetime.fromisoformat(record["created_at"]),
            )  # fmt: skip
        return KeyState(tenant, None, "absent")

    def tenants(self) -> list[str]:
        """Every tenant the keyring has a record of (key, canary or tombstone)."""
        if not self.root.is_dir():
            return []
        return sorted({p.name.split(".", 1)[0] for p in self.root.glob("*.json")})

    def canary(self, tenant: str) -> CanaryResult:
        _, canary_path, _ = self._paths(tenant)
        if not canary_path.exists():
            return CanaryResult(present=False, decrypts=False)
        canary = json.loads(canary_path.read_text())
        try:
            _, key = self.data_key(tenant)
            opened = AESGCM(key).decrypt(
                base64.b64decode(canary["nonce"]), base64.b64decode(canary["ciphertext"]), None
            )
        except (KeyDestroyedError, InvalidTag, IntegrityError):
            return CanaryResult(present=True, decrypts=False)
        return CanaryResult(present=True, decrypts=opened == _CANARY_TEXT)


def open_keyring(settings: Settings) -> Keyring:
    if settings.keyring.url in ("", "local"):
        return LocalKeyring(
            settings.root / "keyring", settings.keys_dir / "kek.key", settings.keyring.destroy_delay
        )
    raise ConfigurationError(
        f"OFFBOARD_KEYRING_URL={settings.keyring.url!r}: only the local keyring is built in this "
        "version; docs/backups.md describes the Cloud KMS mapping of the same interface"
    )
