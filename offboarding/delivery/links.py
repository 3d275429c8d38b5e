"""Download links and acknowledgement links, signed.

Cloud Storage deliveries get V4 signed URLs (`offboarding.stores.gcs`). Local deliveries get an
HMAC-signed token (itsdangerous) naming the store, the object and the expiry, served by the
link endpoint (`offboarding.web`, `offboard serve-links`). The links themselves are sent to the
contact only; the case keeps their digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from offboarding.core.config import Settings
from offboarding.core.secrets import load_or_create_secret
from offboarding.stores import ObjectStore, backend

__all__ = [
    "LinkExpired",
    "LinkInvalid",
    "LinkSigner",
    "PartLink",
    "link_digest",
    "sign_part_links",
]

_DOWNLOAD_SALT = "tenant-offboarding/bundle-link/2"
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

    def create_ack(self, flow_run_id: str, case_id: str) -> str:
        payload = {"run": flow_run_id, "case": case_id}
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

    def resolve_ack(self, token: str) -> tuple[str, str]:
        payload = self._load(_ACK_SALT, token, None)
        return str(payload["run"]), str(payload["case"])


def sign_part_links(
    settings: Settings, store: ObjectStore, keys: list[str], expires_at: datetime
) -> list[PartLink]:
    """One link per bundle part, valid until `expires_at`, of the kind the store serves."""
    from offboarding.stores.gcs import GcsLinkSigner, GcsStore

    names = [key.rsplit("/", 1)[-1] for key in keys]
    gcs = backend(store)
    if isinstance(gcs, GcsStore):
        signer = GcsLinkSigner(
            settings.stores.gcs_signing_key_file, settings.stores.gcs_signing_email
        )
        return [
            PartLink(name, gcs.signed_url(key, filename=name, expires_at=expires_at, signer=signer))
            for key, name in zip(keys, names, strict=True)
        ]
    local = LinkSigner.from_settings(settings)
    return [
        PartLink(name, local.create(store.url, key, expires_at))
        for key, name in zip(keys, names, strict=True)
    ]
