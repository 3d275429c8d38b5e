"""Ed25519 signatures for manifests, audit events and certificates.

The key is generated on first use into the keys directory. Signatures are detached and raw
(64 bytes), so anyone can check them with OpenSSL alone:

    openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json \
        -sigfile manifest.json.sig
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from offboarding.core.errors import ConfigurationError, IntegrityError
from offboarding.core.secrets import write_private

__all__ = ["Signer", "fingerprint", "load_public_key", "verify_signature"]

_PRIVATE_NAME = "signing-ed25519.pem"
_PUBLIC_NAME = "signing-ed25519.pub.pem"


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
