"""Streaming AES-256-GCM for backups (the `cryptography` package's GCM mode, fed in chunks so
memory stays flat whatever the backup's size).

One random 96-bit nonce per file and per key; the associated data binds the ciphertext to its
tenant and object, so a backup cannot be passed off as another one. GCM's limit of about 64 GiB
per (key, nonce) bounds one encrypted part: bundles are split well below it.
Decryption releases plaintext before the tag is checked at the end: callers treat nothing as
restored until `decrypt_stream` returns.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from offboarding.core.errors import IntegrityError

__all__ = ["Sealed", "decrypt_stream", "encrypt_stream"]

_CHUNK = 4 * 1024 * 1024
MAX_PLAINTEXT_BYTES = 60 * 1024**3  # below GCM's 2^39 - 256 bits per nonce


@dataclass(frozen=True)
class Sealed:
    """What is needed, besides the key, to open a ciphertext, and what to expect inside."""

    nonce: str  # base64
    tag: str  # base64
    plaintext_bytes: int
    plaintext_sha256: str
    ciphertext_sha256: str


def encrypt_stream(
    key: bytes, source: BinaryIO, write: Callable[[bytes], object], associated_data: bytes
) -> Sealed:
    nonce = os.urandom(12)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(associated_data)
    plain, sealed, size = hashlib.sha256(), hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        size += len(chunk)
        if size > MAX_PLAINTEXT_BYTES:
            raise IntegrityError(
                f"one encrypted part may hold at most {MAX_PLAINTEXT_BYTES} bytes (AES-GCM's "
                "limit per nonce): lower OFFBOARD_BUNDLE_PART_BYTES"
            )
        plain.update(chunk)
        out = encryptor.update(chunk)
        sealed.update(out)
        write(out)
    tail = encryptor.finalize()
    sealed.update(tail)
    write(tail)
    return Sealed(
        nonce=base64.b64encode(nonce).decode(),
        tag=base64.b64encode(encryptor.tag).decode(),
        plaintext_bytes=size,
        plaintext_sha256=plain.hexdigest(),
        ciphertext_sha256=sealed.hexdigest(),
    )


def decrypt_stream(
    key: bytes,
    source: BinaryIO,
    write: Callable[[bytes], object],
    associated_data: bytes,
    sealed: Sealed,
) -> str:
    """Decrypt into `write`; return the plaintext's sha256 once the tag has been checked."""
    decryptor = Cipher(
        algorithms.AES(key),
        modes.GCM(base64.b64decode(sealed.nonce), base64.b64decode(sealed.tag)),
    ).decryptor()
    decryptor.authenticate_additional_data(associated_data)
    plain = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        out = decryptor.update(chunk)
        plain.update(out)
        write(out)
    try:
        tail = decryptor.finalize()
    except InvalidTag:
        raise IntegrityError(
            "the ciphertext, its associated data or its tag was altered (or the key is not the "
            "one it was sealed with): nothing decrypted from it can be trusted"
        ) from None
    plain.update(tail)
    write(tail)
    if plain.hexdigest() != sealed.plaintext_sha256:
        raise IntegrityError("decrypted bytes differ from the digest recorded at backup time")
    return plain.hexdigest()
