"""Ed25519 signatures for manifests, audit events and certificates, and the list of the
operator's signing keys over time.

The key is generated on first use into the keys directory. Signatures are detached and raw
(64 bytes), so anyone can check them with OpenSSL alone:

    openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json \
        -sigfile manifest.json.sig

Keys rotate (`rotate_signing_key`, `offboard keys rotate`): the retiring key signs its
successor's introduction, so trust in the first published key carries to every later one, and
the key list (`signing-keys.json`, published in the archive) gives each key its validity
period. Records name the key that signed them (`signing_key`); a record signed by a retired key
still verifies, one dated after that key's retirement does not.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.core.secrets import write_private

__all__ = [
    "KeyList",
    "PublishedKey",
    "Signer",
    "fingerprint",
    "load_key_list",
    "load_public_key",
    "rotate_signing_key",
    "signed_date",
    "signed_fields",
    "verify_signature",
]

_PRIVATE_NAME = "signing-ed25519.pem"
_PUBLIC_NAME = "signing-ed25519.pub.pem"
_LIST_NAME = "signing-keys.json"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)  # between the host that rotates and the hosts that sign


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise IntegrityError(f"public key is not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError("public key is not an Ed25519 key")
    return key


def verify_signature(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> Signer:
        """The installation's signing key, created (0600) on first run."""
        private_path = keys_dir / _PRIVATE_NAME
        if private_path.exists():
            loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ConfigurationError(f"{private_path} is not an Ed25519 private key")
            public_path = keys_dir / _PUBLIC_NAME
            if not public_path.exists():
                public_path.write_bytes(public_pem(loaded.public_key()))
            return cls(loaded)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if not write_private(private_path, pem):  # another process won the race: use its key
            return cls.load_or_create(keys_dir)
        (keys_dir / _PUBLIC_NAME).write_bytes(public_pem(key.public_key()))
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_pem(self) -> bytes:
        return public_pem(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def _introduction(fingerprint_: str, valid_from: datetime) -> bytes:
    """What a retiring key signs to introduce its successor."""
    return (
        f"tenant-offboarding signing key {fingerprint_} valid from {valid_from.isoformat()}"
    ).encode()


@dataclass(frozen=True)
class PublishedKey:
    """One of the operator's signing keys and the period it signed in."""

    fingerprint: str
    public_pem: bytes
    valid_from: datetime
    valid_until: datetime | None = None  # None: the current key
    introduced_by: str | None = None  # the predecessor's fingerprint
    introduction: bytes | None = None  # the predecessor's signature of `_introduction`

    @property
    def public_key(self) -> Ed25519PublicKey:
        return load_public_key(self.public_pem)

    def covers(self, at: datetime) -> bool:
        """Whether a record dated `at` may carry this key's signature (give or take the
        clocks of the hosts that sign)."""
        return self.valid_from - CLOCK_SKEW <= at and (
            self.valid_until is None or at <= self.valid_until + CLOCK_SKEW
        )

    def as_json(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "public_key": self.public_pem.decode(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "introduced_by": self.introduced_by,
            "introduction": self.introduction.hex() if self.introduction else None,
        }


@dataclass(frozen=True)
class KeyList:
    """The operator's signing keys, oldest first: what an auditor checks signatures against."""

    keys: tuple[PublishedKey, ...]

    @classmethod
    def of(cls, public_key: Ed25519PublicKey) -> KeyList:
        """One key, valid at any time (an auditor given a single published key)."""
        pem = public_pem(public_key)
        return cls((PublishedKey(fingerprint(public_key), pem, _EPOCH),))

    @classmethod
    def from_json(cls, data: bytes, where: str = "the key list") -> KeyList:
        try:
            entries = json.loads(data)["keys"]
            keys = tuple(
                PublishedKey(
                    fingerprint=entry["fingerprint"],
                    public_pem=entry["public_key"].encode(),
                    valid_from=datetime.fromisoformat(entry["valid_from"]),
                    valid_until=datetime.fromisoformat(entry["valid_until"])
                    if entry["valid_until"] else None,
                    introduced_by=entry.get("introduced_by"),
                    introduction=bytes.fromhex(entry["introduction"])
                    if entry.get("introduction") else None,
                )
                for entry in entries
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            raise IntegrityError(f"{where}: not a list of signing keys ({error})") from None
        listed = cls(keys)
        listed.check(where)
        return listed

    def to_json(self) -> bytes:
        return json.dumps({"keys": [k.as_json() for k in self.keys]}, indent=2).encode() + b"\n"

    def check(self, where: str = "the key list") -> None:
        """Each key is the one its fingerprint names, and each later key was introduced by its
        predecessor's signature: trust in the first key carries to the last."""
        for number, key in enumerate(self.keys):
            if fingerprint(key.public_key) != key.fingerprint:
                raise IntegrityError(f"{where}: key {key.fingerprint} is not the key it lists")
            if number == 0:
                continue
            before = self.keys[number - 1]
            introduced = key.introduction is not None and verify_signature(
                before.public_key, _introduction(key.fingerprint, key.valid_from),
                key.introduction,
            )  # fmt: skip
            if key.introduced_by != before.fingerprint or not introduced:
                raise IntegrityError(
                    f"{where}: key {key.fingerprint} was not introduced by its predecessor "
                    f"{before.fingerprint} (no valid signature of the hand-over): it cannot be "
                    "trusted as the operator's key"
                )

    def get(self, fingerprint_: str) -> PublishedKey | None:
        return next((k for k in self.keys if k.fingerprint == fingerprint_), None)

    def verify(
        self,
        body: bytes,
        signature: bytes,
        where: str,
        *,
        signing_key: str | None = None,
        at: datetime | None = None,
    ) -> PublishedKey:
        """The key that signed `body`; the one it names (and within its validity at `at`), or
        any key of the list when the record names none. IntegrityError otherwise."""
        if signing_key is not None:
            named = self.get(signing_key)
            if named is None:
                raise IntegrityError(
                    f"{where}: signed by key {signing_key}, which is not in the operator's key "
                    "list: give the published key list (--key-list) that has it"
                )
            candidates = [named]
        else:
            candidates = list(self.keys)
        for key in candidates:
            if verify_signature(key.public_key, body, signature):
                if at is not None and not key.covers(at):
                    until = key.valid_until.isoformat() if key.valid_until else "now"
                    raise IntegrityError(
                        f"{where}: dated {at.isoformat()} but signed by key {key.fingerprint}, "
                        f"valid only from {key.valid_from.isoformat()} to {until}: signed with "
                        "a key outside its period (a retired key reused?)"
                    )
                return key
        raise IntegrityError(f"{where}: the signature does not match its content")


def load_key_list(keys_dir: Path) -> KeyList:
    """The installation's key list; started with the current key on first use."""
    path = keys_dir / _LIST_NAME
    signer = Signer.load_or_create(keys_dir)
    if path.exists():
        listed = KeyList.from_json(path.read_bytes(), str(path))
        if listed.keys[-1].fingerprint != signer.fingerprint:
            raise ConfigurationError(
                f"{path} ends with key {listed.keys[-1].fingerprint}, but the signing key in "
                f"{keys_dir} is {signer.fingerprint}: the keys directory is inconsistent. "
                "Restore the key that matches the list (rotate with `offboard keys rotate`, "
                "never by replacing the key file)"
            )
        return listed
    # The first key's period has no known start (a key file's date is that of its last copy,
    # later than records it signed elsewhere): it starts with the epoch.
    listed = KeyList((PublishedKey(signer.fingerprint, signer.public_pem, _EPOCH),))
    write_private(path, listed.to_json())  # another process may have written the same first
    return KeyList.from_json(path.read_bytes(), str(path))


def rotate_signing_key(
    keys_dir: Path, now: datetime | None = None
) -> tuple[PublishedKey, PublishedKey]:
    """Retire the current key and make a new one, introduced by the old: (retired, new).

    The retired private key is moved to `retired/` for the operator to take offline or destroy;
    records it signed keep verifying against its public key in the list."""
    at = now or datetime.now(UTC)
    listed = load_key_list(keys_dir)
    old = Signer.load_or_create(keys_dir)
    current = listed.keys[-1]
    if current.fingerprint != old.fingerprint:
        raise ConfigurationError(
            f"{keys_dir / _LIST_NAME} ends with key {current.fingerprint}, but the signing key "
            f"is {old.fingerprint}: restore the matching key list before rotating"
        )
    new_key = Ed25519PrivateKey.generate()
    new_fingerprint = fingerprint(new_key.public_key())
    new = PublishedKey(
        fingerprint=new_fingerprint, public_pem=public_pem(new_key.public_key()), valid_from=at,
        introduced_by=old.fingerprint, introduction=old.sign(_introduction(new_fingerprint, at)),
    )  # fmt: skip
    retired = replace(current, valid_until=at)
    rotated = KeyList((*listed.keys[:-1], retired, new))
    rotated.check()
    private = keys_dir / _PRIVATE_NAME
    write_private(  # a copy first: at no moment is there no signing key to load
        keys_dir / "retired" / f"{old.fingerprint.replace(':', '-')}.pem", private.read_bytes()
    )
    staged_key = keys_dir / f"{_PRIVATE_NAME}.new"
    staged_key.unlink(missing_ok=True)
    write_private(
        staged_key,
        new_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )  # fmt: skip
    os.replace(staged_key, private)
    (keys_dir / _PUBLIC_NAME).write_bytes(new.public_pem)
    staged = keys_dir / f"{_LIST_NAME}.new"
    staged.write_bytes(rotated.to_json())
    os.replace(staged, keys_dir / _LIST_NAME)
    return retired, new


def signed_fields(body: bytes) -> dict[str, Any]:
    """The fields of a signed JSON document that say how to check it (its signing key, its
    date), read before its signature is. A body that is not a JSON object (a byte changed in
    it, or damage) gives none: every key is then tried, none matches, and the document is
    reported as one whose signature does not match its content, never as an error."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def signed_date(fields: dict[str, Any], name: str) -> datetime | None:
    """The document's date `name` (ISO 8601), None where it has none or none that parses
    (then the key's validity cannot narrow the check, and a changed date fails the signature)."""
    value = fields.get(name)
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
