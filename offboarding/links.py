"""Download links and the client's acknowledgement page.

Cloud Storage deliveries get V4 signed URLs (`offboarding.gcs`). Local deliveries get an
HMAC-signed token (itsdangerous) naming the store, the object and the expiry, served by a small
Starlette app (`offboard serve-links`):

    GET  /d/{token}     the bundle part's bytes; 403 bad signature; 410 expired or destroyed
    GET  /c/{token}     a page listing every part of a multi-part bundle, one link each
    GET  /ack/{token}   the acknowledgement form for the client's contact
    POST /ack/{token}   resumes the waiting case through Prefect's API (its server validates)

The links themselves are sent to the contact only; the case keeps their digests.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from itsdangerous import BadSignature, URLSafeSerializer

from offboarding.config import Settings
from offboarding.secrets import load_or_create_secret
from offboarding.store import LocalStore, ObjectStore, backend, open_store

if TYPE_CHECKING:
    from starlette.responses import HTMLResponse

__all__ = [
    "LinkExpired",
    "LinkInvalid",
    "LinkSigner",
    "PartLink",
    "create_app",
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
        return cls(secret, settings.link_base_url.rstrip("/"))

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
    from offboarding.gcs import GcsLinkSigner, GcsStore

    names = [key.rsplit("/", 1)[-1] for key in keys]
    gcs = backend(store)
    if isinstance(gcs, GcsStore):
        signer = GcsLinkSigner(settings.gcs_signing_key_file, settings.gcs_signing_email)
        return [
            PartLink(name, gcs.signed_url(key, filename=name, expires_at=expires_at, signer=signer))
            for key, name in zip(keys, names, strict=True)
        ]
    local = LinkSigner.from_settings(settings)
    return [
        PartLink(name, local.create(store.url, key, expires_at))
        for key, name in zip(keys, names, strict=True)
    ]


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
label{{display:block;margin-top:1em}}</style></head><body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    from starlette.responses import HTMLResponse

    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def create_app(settings: Settings) -> Any:
    """The endpoint for local links and acknowledgements (run by `offboard serve-links`)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    signer = LinkSigner.from_settings(settings)
    allowed = set(settings.delivery_store_urls())

    def local_store(url: str) -> ObjectStore | None:
        store = open_store(url) if url in allowed else None
        return store if store is not None and isinstance(backend(store), LocalStore) else None

    async def download(request: Request) -> Response:
        try:
            store_url, key = signer.resolve(request.path_params["token"])
        except LinkInvalid:
            return PlainTextResponse("invalid link\n", status_code=403)
        except LinkExpired:
            return PlainTextResponse(
                "this link has expired; ask us for a new one by replying to our message\n",
                status_code=410,
            )
        store = local_store(store_url)
        if store is None or not store.exists(key):
            return PlainTextResponse("this export no longer exists\n", status_code=410)
        handle = store.open_read(key)
        filename = key.rsplit("/", 1)[-1]
        return StreamingResponse(
            iter(lambda: handle.read(1024 * 1024), b""),
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    async def index(request: Request) -> Response:
        try:
            payload = signer.resolve_index(request.path_params["token"])
        except LinkInvalid:
            return PlainTextResponse("invalid link\n", status_code=403)
        except LinkExpired:
            return PlainTextResponse("this link has expired\n", status_code=410)
        expires_at = datetime.fromtimestamp(payload["exp"], UTC)
        items = "".join(
            f'<li><a href="{html.escape(signer.create(payload["s"], key, expires_at))}">'
            f"{html.escape(key.rsplit('/', 1)[-1])}</a></li>"
            for key in payload["keys"]
        )
        return _page(
            "Your data export",
            f"<p>Download every part (valid until {expires_at:%Y-%m-%d %H:%M} UTC), then check "
            f"them together as README.txt inside explains.</p><ol>{items}</ol>",
        )

    async def acknowledge(request: Request) -> Response:
        try:
            run_id, case_id = signer.resolve_ack(request.path_params["token"])
        except LinkInvalid:
            return PlainTextResponse("invalid link\n", status_code=403)
        if request.method == "GET":
            return _page("Acknowledge receipt", _ACK_FORM.format(case=html.escape(case_id)))
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        run_input: dict[str, object] = {"acknowledged_by": fields.get("name", [""])[0].strip()}
        days = fields.get("days", [""])[0].strip()
        if days:
            if not days.isdigit():
                return _page("Not recorded", "<p>Days must be a whole number, 0 to 90.</p>", 422)
            run_input["days_until_destruction"] = int(days)
        note = fields.get("note", [""])[0].strip()
        if note:
            run_input["note"] = note
        error = await _resume(run_id, run_input)
        if error:
            return _page("Not recorded", f"<p>{html.escape(error)}</p>", 422)
        return _page("Thank you", "<p>Your acknowledgement is recorded.</p>")

    return Starlette(
        routes=[
            Route("/d/{token}", download),
            Route("/c/{token}", index),
            Route("/ack/{token}", acknowledge, methods=["GET", "POST"]),
        ]
    )


_ACK_FORM = """<p>Case {case}. By acknowledging, you confirm you received the export and can open
it. Your data will then be destroyed on our side, by default after our grace period and at the
latest 90 days from today.</p><form method="post">
<label>Your name <input name="name" required maxlength="200"></label>
<label>Days before destruction (0-90, optional) <input name="days" type="number" min="0"
max="90"></label><label>Note (optional) <textarea name="note" maxlength="1000"></textarea></label>
<p><button type="submit">Acknowledge receipt</button></p></form>"""


async def _resume(run_id: str, run_input: dict[str, object]) -> str | None:
    """Resume the case through Prefect; the reason in words when it cannot be."""
    from uuid import UUID

    from prefect.exceptions import PrefectException
    from prefect.flow_runs import aresume_flow_run

    try:
        await aresume_flow_run(UUID(run_id), run_input=run_input)
    except RuntimeError as error:  # the server refused the input (its schema validation)
        return f"The acknowledgement was not accepted: {error}. Check the fields and retry."
    except PrefectException:
        return "This case is no longer waiting for an acknowledgement."
    return None
