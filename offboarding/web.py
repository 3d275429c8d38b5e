"""The link endpoint: local downloads and the client's acknowledgement page (`offboard
serve-links`), a small Starlette app on top of the library.

    GET  /d/{token}     the bundle part's bytes; 403 bad signature; 410 expired or destroyed
    GET  /c/{token}     a page listing every part of a multi-part bundle, one link each
    GET  /ack/{token}   the acknowledgement form for the client's contact
    POST /ack/{token}   resumes the waiting case through the orchestrator's `Runs` (whose server
                        validates the fields again)
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from offboarding.core.config import Settings
from offboarding.core.errors import AcknowledgementRejected, NotWaitingError
from offboarding.delivery.links import LinkExpired, LinkInvalid, LinkSigner
from offboarding.runs import AcknowledgementInput, Runs
from offboarding.stores import LocalStore, ObjectStore, backend, open_store

if TYPE_CHECKING:
    from starlette.responses import HTMLResponse

__all__ = ["create_app"]


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
label{{display:block;margin-top:1em}}</style></head><body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    from starlette.responses import HTMLResponse

    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def create_app(settings: Settings, runs: Runs) -> Any:
    """The endpoint for local links and acknowledgements (run by `offboard serve-links`)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
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
            media_type="application/octet-stream"
            if filename.endswith(".age")
            else "application/zip",
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
        days = fields.get("days", [""])[0].strip()
        if days and not days.isdigit():
            return _page("Not recorded", "<p>Days must be a whole number, 0 to 90.</p>", 422)
        try:
            acknowledgement = AcknowledgementInput(
                acknowledged_by=fields.get("name", [""])[0].strip(),
                days_until_destruction=int(days) if days else None,
                note=fields.get("note", [""])[0].strip() or None,
            )
        except ValidationError as invalid:
            problems = "; ".join(str(e["msg"]) for e in invalid.errors())
            return _page(
                "Not recorded",
                f"<p>The acknowledgement was not accepted: {html.escape(problems)}. Check the "
                "fields and retry.</p>",
                422,
            )
        try:
            await run_in_threadpool(runs.resume, run_id, acknowledgement)
        except AcknowledgementRejected as refused:
            return _page("Not recorded", f"<p>{html.escape(str(refused))}</p>", 422)
        except NotWaitingError:
            return _page(
                "Not recorded", "<p>This case is no longer waiting for an acknowledgement.</p>", 422
            )
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
