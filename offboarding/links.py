"""Expiring download links for the local store: an HMAC-signed token (itsdangerous) naming the
object and its expiry, and a small Starlette endpoint that serves it.

    200  the bundle's bytes
    403  the token's signature does not check out
    410  the link expired, or the bundle was destroyed
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from offboarding.config import Settings
from offboarding.secrets import load_or_create_secret
from offboarding.store import ObjectStore, open_store

__all__ = ["LinkExpired", "LinkInvalid", "LinkSigner", "create_app", "link_digest"]

_SALT = "tenant-offboarding/bundle-link/1"


class LinkInvalid(Exception):
    """The token was not made with our key."""


class LinkExpired(Exception):
    """The token is genuine but past its expiry."""


def link_digest(link: str) -> str:
    """What the case record keeps of a link: enough to recognise it, not to use it."""
    return hashlib.sha256(link.encode()).hexdigest()


@dataclass(frozen=True)
class LinkSigner:
    secret: bytes
    base_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        secret = load_or_create_secret(settings.keys_dir / "link-hmac.key")
        return cls(secret, settings.link_base_url.rstrip("/"))

    def _serializer(self) -> URLSafeSerializer:
        return URLSafeSerializer(self.secret, salt=_SALT)

    def create(self, key: str, expires_at: datetime) -> str:
        token = self._serializer().dumps({"key": key, "exp": int(expires_at.timestamp())})
        return f"{self.base_url}/d/{token}"

    def resolve(self, token: str, now: datetime | None = None) -> str:
        """The object key a token grants, or LinkInvalid / LinkExpired."""
        try:
            payload: dict[str, Any] = self._serializer().loads(token)
        except BadSignature as error:
            raise LinkInvalid("link signature does not match") from error
        if (now or datetime.now(UTC)).timestamp() >= payload["exp"]:
            raise LinkExpired("link expired")
        return str(payload["key"])


def create_app(settings: Settings) -> Any:
    """The download endpoint for local links (run with any ASGI server, e.g. uvicorn)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    signer = LinkSigner.from_settings(settings)
    store: ObjectStore = open_store(settings.store_url("delivery"))

    async def download(request: Request) -> Response:
        try:
            key = signer.resolve(request.path_params["token"])
        except LinkInvalid:
            return PlainTextResponse("invalid link\n", status_code=403)
        except LinkExpired:
            return PlainTextResponse("this link has expired; ask for a new one\n", status_code=410)
        if not store.exists(key):
            return PlainTextResponse("this export no longer exists\n", status_code=410)
        handle = store.open_read(key)
        filename = key.rsplit("/", 1)[-1]
        return StreamingResponse(
            iter(lambda: handle.read(1024 * 1024), b""),
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    return Starlette(routes=[Route("/d/{token}", download)])
