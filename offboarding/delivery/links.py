"""Download links and acknowledgement links, signed.

Every download link is an HMAC-signed token (itsdangerous) naming the store, the object, the
case and the expiry, served by the link endpoint (`offboarding.web`, `offboard serve-links`),
which records each download (`receipts.py`). For a local store the endpoint streams the part;
for Cloud Storage it redirects to a V4 signed URL made for that request and valid for
`REDIRECT_LIFETIME` (`fresh_url`). The links themselves are sent to the contact only; the case
keeps their digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from offboarding.core.config import Settings
from offboarding.core.secrets import load_or_create_secret
from offboarding.stores import ObjectStore, backend

__all__ = [
    "REDIRECT_LIFETIME",
    "LinkExpired",
    "LinkInvalid",
    "LinkSigner",
    "PartLink",
    "fresh_url",
    "link_digest",
    "sign_part_links",
]

_DOWNLOAD_SALT = "tenant-offboarding/bundle-link/2"
# A Cloud Storage URL the endpoint redirects to: long enough to start a large download (an
# ongoing transfer is not cut at expiry), short enough that a copied URL soon stops working.
REDIRECT_LIFETIME = timedelta(minutes=15)
_INDEX_SALT = "tenant-offboarding/bundle-index/1"
_ACK_SALT = "tenant-offboarding/acknowledgement/1"


class LinkInvalid(Exception):
    """The token was not made with our key."""


class LinkExpired(Exception):
    """The token is genuine but past its expiry."""


def link_digest(link: str) -> str:
    """What the case record keeps of a link: enough to recognise it, not to use it."""
    return hashlib.sha256(link.encode()).hexdigest()


@dataclass(frozen=True)
class PartLink:
    filename: str
    url: str


@dataclass(frozen=True)
class LinkSigner:
    secret: bytes
    base_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        secret = load_or_create_secret(settings.keys_dir / "link-hmac.key")
        return cls(secret, settings.delivery.link_base_url.rstrip("/"))

    def _serializer(self, salt: str) -> URLSafeSerializer:
        return URLSafeSerializer(self.secret, salt=salt)

    def create(self, store_url: str, key: str, expires_at: datetime) -> str:
        payload = {"s": store_url, "key": key, "exp": int(expires_at.timestamp())}
        return f"{self.base_url}/d/{self._serializer(_DOWNLOAD_SALT).dumps(payload)}"

    def create_index(self, store_url: str, keys: list[str], expires_at: datetime) -> str:
        payload = {"s": store_url, "keys": keys, "exp": int(expires_at.timestamp())}
        return f"{self.base_url}/c/{self._serializer(_INDEX_SALT).dumps(payload)}"

    def create_ack(self, flow_run_id: str, case_id: str, expires_at: datetime) -> str:
        """The acknowledgement page's link: valid until the case would be deemed delivered
        anyway (after that nothing waits for it)."""
        payload = {"run": flow_run_id, "case": case_id, "exp": int(expires_at.timestamp())}
        return f"{self.base_url}/ack/{self._serializer(_ACK_SALT).dumps(payload)}"

    def _load(self, salt: str, token: str, now: datetime | None) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = self._serializer(salt).loads(token)
        except BadSignature as error:
            raise LinkInvalid("link signature does not match") from error
        if "exp" in payload and (now or datetime.now(UTC)).timestamp() >= payload["exp"]:
            raise LinkExpired("link expired")
        return payload

    def resolve(self, token: str, now: datetime | None = None) -> tuple[str, str]:
        """(store URL, object key) a download token grants, or LinkInvalid / LinkExpired."""
        payload = self._load(_DOWNLOAD_SALT, token, now)
        return str(payload["s"]), str(payload["key"])

    def resolve_index(self, token: str, now: datetime | None = None) -> dict[str, Any]:
        return self._load(_INDEX_SALT, token, now)

    def resolve_ack(self, token: str, now: datetime | None = None) -> tuple[str, str]:
        """(run id, case id) an acknowledgement token names; a token without an expiry
        (sent by releases before 0.4) counts as expired."""
        payload = self._load(_ACK_SALT, token, now)
        if "exp" not in payload:
            raise LinkExpired("acknowledgement link without an expiry")
        return str(payload["run"]), str(payload["case"])


def sign_part_links(
    settings: Settings, store: ObjectStore, keys: list[str], expires_at: datetime
) -> list[PartLink]:
    """One link per bundle part, valid until `expires_at`, through the link endpoint (which
    records every download), whatever the store."""
    local = LinkSigner.from_settings(settings)
    return [
        PartLink(key.rsplit("/", 1)[-1], local.create(store.url, key, expires_at)) for key in keys
    ]


def fresh_url(settings: Settings, store: ObjectStore, key: str, now: datetime) -> str | None:
    """A Cloud Storage V4 signed URL for one download, valid `REDIRECT_LIFETIME`; None for a
    store the endpoint serves itself."""
    from offboarding.stores.gcs import GcsLinkSigner, GcsStore

    gcs = backend(store)
    if not isinstance(gcs, GcsStore):
        return None
    signer = GcsLinkSigner(settings.stores.gcs_signing_key_file, settings.stores.gcs_signing_email)
    name = key.rsplit("/", 1)[-1]
    return gcs.signed_url(key, filename=name, expires_at=now + REDIRECT_LIFETIME, signer=signer)
