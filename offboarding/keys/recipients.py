"""Bundles only the client can open: each ZIP part is encrypted, as it is produced, to the
client's age recipient (an X25519 public key, `age1…`, from the tenants table through the data
map's `[tenants] recipient`), with pyrage, the binding of the rage implementation of age.

The client decrypts with the standard tool: `age -d -i identity.txt part.zip.age > part.zip`.
Nothing the operator holds can open the result: a leaked link or a copied bucket exposes
ciphertext only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyrage
from pyrage import x25519

from offboarding.core.errors import TenantError
from offboarding.stores import HashingWriter

__all__ = ["AGE_HEADER", "Plaintext", "encrypting", "parse_recipient"]

AGE_HEADER = b"age-encryption.org/v1\n"


def parse_recipient(text: str, tenant: str) -> x25519.Recipient:
    """The tenant's age recipient, or a clear error naming what to fix."""
    try:
        return x25519.Recipient.from_str(text.strip())
    except (pyrage.RecipientError, ValueError) as error:
        raise TenantError(
            f"tenant {tenant!r} has a recipient that is not an age X25519 public key ("
            f"{error}): put the client's `age1…` key (the output of `age-keygen -y`) in the "
            "tenants table's recipient column, or clear it to deliver unencrypted; nothing "
            "was written"
        ) from None


@dataclass
class Plaintext:
    """The digest and size of what was encrypted, known once the part is written."""

    sha256: str = ""
    size: int = 0


def encrypting(
    recipient: x25519.Recipient, fill: Callable[[Any], None], plaintext: Plaintext
) -> Callable[[Any], None]:
    """`fill`, encrypted: the plaintext it writes goes through a pipe to age's encryptor on a
    thread of its own, which writes the ciphertext to the target. Memory stays bounded by
    the pipe and age's 64 KiB chunks, whatever the part's size; the plaintext's digest is
    taken on the way."""

    def encrypted(target: Any) -> None:
        read_end, write_end = os.pipe()
        failures: list[BaseException] = []

        def encrypt() -> None:
            try:
                with os.fdopen(read_end, "rb") as source:
                    pyrage.encrypt_io(source, target, [recipient])
            except BaseException as error:  # reported on the caller's thread
                failures.append(error)

        encryptor = threading.Thread(target=encrypt, name="age-encrypt", daemon=True)
        encryptor.start()
        try:
            with os.fdopen(write_end, "wb") as pipe:
                clear = HashingWriter(pipe)
                fill(clear)
        except BaseException:
            encryptor.join()
            if failures:
                raise failures[0] from None
            raise
        encryptor.join()
        if failures:
            raise failures[0]
        plaintext.sha256, plaintext.size = clear.sha256, clear.size

    return encrypted
