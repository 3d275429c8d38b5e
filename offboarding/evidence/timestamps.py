"""Evidence anchored outside the operator: RFC 3161 timestamps on each certified case.

Whoever holds the operator's signing key can rewrite a case's chain and sign it again; every
signature would still verify. A timestamp authority's token fixes a digest at a time, signed by
a key the operator does not hold. The chain's head is timestamped at the case's milestones, and
the certificate once it exists:

    timestamps/<tenant>/<case>/<NNNNN>.tsr        the chain's head: its imprint is the sha256 of
                                                  event NNNNN's body, which every earlier event
                                                  is chained to. At delivery and at the
                                                  acknowledgement (best effort: an authority
                                                  that does not answer is logged, the case goes
                                                  on), and at certification (required)
    timestamps/<tenant>/<case>/certificate.tsr    the certificate: the sha256 of
                                                  certificates/<tenant>/<case>.json

Each token is the authority's whole TimeStampResp (DER), as OpenSSL reads it:

    openssl ts -verify -digest "$(sha256sum certificates/acme/acme-….json | cut -d' ' -f1)" \
        -in timestamps/acme/acme-…/certificate.tsr -CAfile tsa-ca.pem

`check_case` is what `offboard audit verify` runs: each token must be the authority's (its
signature, its certificate's chain to the given roots), and its imprint must be the archived
digest. A chain or a certificate rewritten after its timestamp fails there, whoever signed it.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, IntegrityError, ServiceError
from offboarding.core.records import CaseRef
from offboarding.stores import ObjectStore

_log = logging.getLogger("offboarding.timestamps")

__all__ = [
    "Anchor",
    "anchor_certified",
    "anchor_head",
    "check_case",
    "load_roots",
    "request_token",
    "timestamp_prefix",
]


def timestamp_prefix(case: CaseRef) -> str:
    return f"timestamps/{case.tenant}/{case.case_id}/"


def load_roots(path: Path) -> list[x509.Certificate]:
    """The timestamp authority's root certificate(s), from a PEM file."""
    try:
        roots = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"{path}: not a PEM file of the timestamp authority's root certificate(s) ({error})"
        ) from None
    return roots


def _verified(token: bytes, roots: list[x509.Certificate], where: str) -> tuple[bytes, datetime]:
    """(imprint, time) of a token the authority signed, its certificate chaining to `roots`."""
    try:
        response = decode_timestamp_response(token)
        imprint = response.tst_info.message_imprint.message
        verifier = VerifierBuilder(roots=list(roots)).build()
        verifier.verify(response, imprint)
    except (ValueError, VerificationError) as error:
        raise IntegrityError(
            f"{where}: not a timestamp token of the trusted authority ({error})"
        ) from None
    return imprint, response.tst_info.gen_time


def request_token(settings: Settings, data: bytes) -> bytes:
    """A timestamp of sha256(data) from the configured authority, checked before it is kept."""
    evidence = settings.evidence
    if evidence.timestamp_ca is None:
        raise ConfigurationError(
            "OFFBOARD_TIMESTAMP_URL is set but OFFBOARD_TIMESTAMP_CA is not: name the PEM file "
            "of the timestamp authority's root certificate, which every token is checked against"
        )
    request = TimestampRequestBuilder(
        data=data, hash_algorithm=HashAlgorithm.SHA256, nonce=True, cert_req=True
    ).build()
    post = urllib.request.Request(  # noqa: S310 (the operator's configured authority)
        evidence.timestamp_url,
        data=request.as_bytes(),
        headers={"content-type": "application/timestamp-query"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(  # noqa: S310
            post, timeout=evidence.timestamp_timeout.total_seconds()
        ) as answer:
            token = bytes(answer.read())
    except (urllib.error.URLError, TimeoutError) as error:
        raise ServiceError(
            f"the timestamp authority at {evidence.timestamp_url} did not answer "
            f"({getattr(error, 'reason', error)}); the step is retried. Check "
            "OFFBOARD_TIMESTAMP_URL"
        ) from None
    response = decode_timestamp_response(token)
    if response.tst_info.nonce != request.nonce:
        raise IntegrityError(f"the timestamp authority at {evidence.timestamp_url}: wrong nonce")
    imprint, _ = _verified(token, load_roots(evidence.timestamp_ca), evidence.timestamp_url)
    if imprint != hashlib.sha256(data).digest():
        raise IntegrityError(f"the timestamp authority at {evidence.timestamp_url} stamped "
                             "another digest than the one asked")  # fmt: skip
    return token


def anchor_head(
    settings: Settings, archive: ObjectStore, case: CaseRef, head: tuple[int, bytes]
) -> str | None:
    """Timestamp the chain's head (seq, body) at a milestone, best effort; the token's key, or
    None (no authority configured, or it did not answer: logged, and certification retries)."""
    if not settings.evidence.timestamp_url:
        return None
    seq, body = head
    key = f"{timestamp_prefix(case)}{seq:05d}.tsr"
    if archive.exists(key):
        return key
    try:
        archive.put_bytes(key, request_token(settings, body))
    except ServiceError as error:
        _log.warning("case %s: event %05d not timestamped: %s", case.case_id, seq, error)
        return None
    return key


def anchor_certified(
    settings: Settings,
    archive: ObjectStore,
    case: CaseRef,
    head: tuple[int, bytes],
    certificate: bytes,
) -> list[str]:
    """Timestamp the chain's head (seq, body) and the certificate, once each; the keys
    written. Nothing when no authority is configured."""
    if not settings.evidence.timestamp_url:
        return []
    seq, body = head
    written = []
    for key, data in (
        (f"{timestamp_prefix(case)}{seq:05d}.tsr", body),
        (f"{timestamp_prefix(case)}certificate.tsr", certificate),
    ):
        if not archive.exists(key):
            archive.put_bytes(key, request_token(settings, data))
            written.append(key)
    return written


@dataclass(frozen=True)
class Anchor:
    """One token checked: what it covers and when the authority saw it."""

    key: str
    covers: str  # "event NNNNN" or "certificate"
    at: datetime


def check_case(
    store: ObjectStore,
    case: CaseRef,
    event_digests: list[str],
    certificate_sha256: str | None,
    roots: list[x509.Certificate],
) -> list[Anchor]:
    """Every token of the case, checked against the archived chain and certificate."""
    anchors = []
    for info in store.list_objects(timestamp_prefix(case)):
        name = info.key.rsplit("/", 1)[-1]
        with store.open_read(info.key) as handle:
            imprint, at = _verified(handle.read(), roots, info.key)
        if name == "certificate.tsr":
            if certificate_sha256 is None:
                raise IntegrityError(f"{info.key}: a timestamped certificate is missing")
            if imprint.hex() != certificate_sha256:
                raise IntegrityError(
                    f"{info.key}: the certificate differs from the one the timestamp authority "
                    f"saw at {at:%Y-%m-%d %H:%M:%S} UTC: it was rewritten after its timestamp"
                )
            anchors.append(Anchor(info.key, "certificate", at))
            continue
        seq = int(name.removesuffix(".tsr"))
        if seq >= len(event_digests):
            raise IntegrityError(
                f"{info.key}: event {seq} was timestamped at {at:%Y-%m-%d %H:%M:%S} UTC but the "
                "chain no longer has it: events were removed after the timestamp"
            )
        if imprint.hex() != event_digests[seq]:
            raise IntegrityError(
                f"{info.key}: the chain's event {seq} differs from the one the timestamp "
                f"authority saw at {at:%Y-%m-%d %H:%M:%S} UTC: the chain was rewritten and "
                "re-signed after its timestamp"
            )
        anchors.append(Anchor(info.key, f"event {seq:05d}", at))
    return anchors
