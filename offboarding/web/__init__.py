"""The link endpoint: local downloads and the client's acknowledgement page (`offboard
serve-links`), a small Starlette app on top of the library.

    GET  /d/{token}     the bundle part's bytes (a local store), or a redirect to a Cloud Storage
                        URL signed for this request; each download leaves a signed receipt
                        (offboarding.delivery.receipts); 403 bad signature; 410 expired or
                        destroyed
    GET  /c/{token}     a page listing every part of a multi-part bundle, one link each
    GET  /ack/{token}   the acknowledgement form for the client's contact (410 once expired: the
                        token lasts until the case would be deemed delivered)
    /staff/             support staff's page (offboarding/web/staff.py), behind credentials
    POST /ack/{token}   resumes the waiting case through the orchestrator's `Runs` (whose server
                        validates the fields again); nothing is kept unless the case waits;
                        fewer days than the grace only once every part was downloaded in
                        full, and after a second, explicit confirmation; bodies over 16 KiB
                        refused
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import AcknowledgementRejected, NotWaitingError, TenantError
from offboarding.core.records import CaseRef, case_from_id
from offboarding.delivery.delivery import acknowledgement_terms, awaiting_acknowledgement
from offboarding.delivery.links import LinkExpired, LinkInvalid, LinkSigner, fresh_url
from offboarding.delivery.receipts import record_download
from offboarding.locations.bundles import BUNDLES_ROOT
from offboarding.people import discard_statement, keep_statement
from offboarding.runs import AcknowledgementInput, Runs
from offboarding.stores import ObjectStore, open_store
from offboarding.web.pages import bounded_body, page
from offboarding.web.staff import staff_routes

__all__ = ["create_app"]


def _case_of(key: str) -> CaseRef | None:
    """The case a delivered part belongs to: bundles/<tenant>/<case>/<part>."""
    parts = key.split("/")
    if len(parts) != 4 or f"{parts[0]}/" != BUNDLES_ROOT:
        return None
    try:
        return CaseRef(tenant=validate_tenant_id(parts[1]), case_id=parts[2])
    except TenantError:
        return None


def create_app(settings: Settings, runs: Runs) -> Any:
    """The endpoint for local links and acknowledgements (run by `offboard serve-links`)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    signer = LinkSigner.from_settings(settings)
    return Starlette(
        routes=[
            Route("/d/{token}", _download(settings, signer)),
            Route("/c/{token}", _index(signer)),
            Route("/ack/{token}", _acknowledge(settings, runs, signer), methods=["GET", "POST"]),
            *staff_routes(settings, runs),
        ]
    )


def _download(settings: Settings, signer: LinkSigner) -> Any:
    """GET /d/{token}: a part's bytes, or a redirect to a URL signed for this request; a
    signed receipt of each download."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import (
        PlainTextResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )

    allowed = set(settings.delivery_store_urls())

    def delivery_store(url: str) -> ObjectStore | None:
        return open_store(url) if url in allowed else None

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
        store = delivery_store(store_url)
        case = _case_of(key)
        if store is None or case is None or not store.exists(key):
            return PlainTextResponse("this export no longer exists\n", status_code=410)
        filename = key.rsplit("/", 1)[-1]
        address = request.client.host if request.client else ""
        with store.open_read(key) as probe:  # the part's size, without reading it
            size = probe.seek(0, 2)
        redirect = await run_in_threadpool(fresh_url, settings, store, key, datetime.now(UTC))
        if redirect is not None:  # Cloud Storage: the client fetches it there, now
            await run_in_threadpool(
                record_download, settings, case, part=filename, sent=size, size=size,
                via="redirect", address=address,
            )  # fmt: skip
            return RedirectResponse(redirect, status_code=307)

        def stream() -> Iterator[bytes]:
            sent = 0
            try:
                with store.open_read(key) as handle:
                    while chunk := handle.read(1024 * 1024):
                        sent += len(chunk)
                        yield chunk
            finally:  # also when the client goes away mid-part: a receipt of what was sent
                record_download(
                    settings, case, part=filename, sent=sent, size=size, via="stream",
                    address=address,
                )  # fmt: skip

        return StreamingResponse(
            stream(),
            media_type="application/octet-stream"
            if filename.endswith(".age")
            else "application/zip",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    return download


def _index(signer: LinkSigner) -> Any:
    """GET /c/{token}: every part of a multi-part bundle, one link each."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

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
        return page(
            "Your data export",
            f"<p>Download every part (valid until {expires_at:%Y-%m-%d %H:%M} UTC), then check "
            f"them together as README.txt inside explains.</p><ol>{items}</ol>",
        )

    return index


def _acknowledge(settings: Settings, runs: Runs, signer: LinkSigner) -> Any:
    """GET and POST /ack/{token}: the client's acknowledgement, resuming the waiting case."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    async def acknowledge(request: Request) -> Response:
        try:
            run_id, case_id = signer.resolve_ack(request.path_params["token"])
            case = case_from_id(case_id)
        except (LinkInvalid, TenantError):
            return PlainTextResponse("invalid link\n", status_code=403)
        except LinkExpired:
            return page(
                "Link expired",
                "<p>This acknowledgement link has expired. The link in our latest message is "
                "valid; or reply to it and we will record your acknowledgement.</p>",
                410,
            )
        if request.method == "GET":
            return page("Acknowledge receipt", _ack_form(case_id))
        body = await bounded_body(request)
        if body is None:
            return page("Not recorded", "<p>The form is too large.</p>", 413)
        fields = parse_qs(body.decode("utf-8", "replace"))
        days = fields.get("days", [""])[0].strip()
        name = fields.get("name", [""])[0].strip()
        note = fields.get("note", [""])[0].strip()
        confirmed = fields.get("confirm_early", [""])[0] == "yes"
        problem = _problem(days, name, note)
        if problem:
            return page(
                "Not recorded",
                f"<p>The acknowledgement was not accepted: {problem} Check the fields and "
                "retry.</p>",
                422,
            )
        # Nothing a person writes is kept for a case that does not wait for it (resumed
        # already, destroyed, its contacts forgotten).
        waiting = await run_in_threadpool(awaiting_acknowledgement, settings, case, run_id, runs)
        if not waiting:
            return page("Not recorded", _NOT_WAITING, 422)
        terms = await run_in_threadpool(
            lambda: acknowledgement_terms(
                settings, case, int(days) if days else None, confirmed=confirmed
            )
        )  # fmt: skip
        if terms.needs_confirmation:
            return page(
                "Confirm a shorter time", _confirm_form(case_id, name, note, days, settings)
            )
        # The name and the note stay in the ledger: the orchestrator gets their reference.
        kept = await run_in_threadpool(
            lambda: keep_statement(
                settings, case.tenant, "acknowledgement", name=name, note=note or None
            )
        )  # fmt: skip
        acknowledgement = AcknowledgementInput(statement=kept, days_until_destruction=terms.days)
        try:
            await run_in_threadpool(runs.resume, run_id, acknowledgement)
        except (AcknowledgementRejected, NotWaitingError) as refused:
            await run_in_threadpool(discard_statement, settings, kept)
            if isinstance(refused, NotWaitingError):
                return page("Not recorded", _NOT_WAITING, 422)
            return page("Not recorded", f"<p>{html.escape(str(refused))}</p>", 422)
        explained = f"<p>{html.escape(terms.explanation)}</p>" if terms.explanation else ""
        return page("Thank you", f"<p>Your acknowledgement is recorded.</p>{explained}")

    return acknowledge


def _problem(days: str, name: str, note: str) -> str | None:
    """What is wrong with an acknowledgement's fields, for the person to fix; None if nothing."""
    if days and not (days.isdigit() and int(days) <= 90):
        return "Days must be a whole number, 0 to 90."
    if not 0 < len(name) <= 200:
        return "Your name is needed (up to 200 characters)."
    if len(note) > 1000:
        return "The note is too long (1000 characters at most)."
    return None


_NOT_WAITING = "<p>This case is no longer waiting for an acknowledgement.</p>"


def _ack_form(case_id: str) -> str:
    return f"""<p>Case {html.escape(case_id)}. By acknowledging, you confirm you received the
export and can open it. Your data will then be destroyed on our side, by default after our
grace period and at the latest 90 days from today. A shorter time is possible once every part
of the export has been downloaded in full.</p><form method="post">
<label>Your name <input name="name" required maxlength="200"></label>
<label>Days before destruction (0-90, optional) <input name="days" type="number" min="0"
max="90"></label><label>Note (optional) <textarea name="note" maxlength="1000"></textarea></label>
<p><button type="submit">Acknowledge receipt</button></p></form>"""


def _confirm_form(case_id: str, name: str, note: str, days: str, settings: Settings) -> str:
    grace = settings.destruction.grace.days
    hidden = "".join(
        f'<input type="hidden" name="{field}" value="{html.escape(value)}">'
        for field, value in (("name", name), ("note", note), ("days", days))
    )
    return f"""<p>Case {html.escape(case_id)}: you asked for your data to be destroyed
{html.escape(days)} day(s) after this acknowledgement, sooner than our standard {grace} days.
Once destroyed, nothing can be recovered. Confirm only if your organisation has checked the
export.</p><form method="post">{hidden}
<label><input type="checkbox" name="confirm_early" value="yes" required> Yes, destroy our data
{html.escape(days)} day(s) after this acknowledgement</label>
<p><button type="submit">Confirm</button></p></form>"""
