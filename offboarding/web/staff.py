"""Support staff's page of the link endpoint, so nobody needs a shell (issue 26):

    GET  /staff/            record a statement; the requests waiting for a second person
    POST /staff/statement   keep what a person said in the ledger, show its reference (st-…)
                            for Prefect's forms; for an acknowledgement, resume the waiting
                            case at once
    POST /staff/approve     approve a request as the second person, which carries it out

Behind the same credentials as the Prefect server (OFFBOARD_STAFF_AUTH, HTTP basic): off when
unset. Behind an SSO proxy, OFFBOARD_STAFF_USER_HEADER names the header with the signed-in
person's identity, which then is who acts (the form's name is not asked). A POST must come from
this page (its Origin or Referer), so another site cannot make a signed-in browser act.
"""

from __future__ import annotations

import base64
import hmac
import html
from typing import Any, get_args
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from offboarding.core.config import Settings
from offboarding.core.errors import OffboardingError
from offboarding.core.records import case_from_id
from offboarding.delivery.delivery import awaiting_acknowledgement, delivery_status
from offboarding.people import (
    StatementKind,
    discard_statement,
    keep_statement,
    statement_fields,
)
from offboarding.runs import AcknowledgementInput, Runs
from offboarding.scheduling.approvals import get_approval, pending_approvals
from offboarding.scheduling.scheduling import approve
from offboarding.web.pages import bounded_body, page

__all__ = ["staff_routes"]

_KINDS: tuple[StatementKind, ...] = get_args(StatementKind)
_REALM = 'Basic realm="tenant-offboarding staff", charset="UTF-8"'


def staff_routes(settings: Settings, runs: Runs) -> list[Any]:
    staff = _StaffPage(settings, runs)
    return [
        Route("/staff/", staff.index),
        Route("/staff/statement", staff.record, methods=["POST"]),
        Route("/staff/approve", staff.approval, methods=["POST"]),
    ]


class _StaffPage:
    """The page's handlers, each refusing a request without the credentials (or, for a POST,
    from another page) before anything else."""

    def __init__(self, settings: Settings, runs: Runs) -> None:
        self.settings, self.runs = settings, runs
        self.expected = settings.delivery.staff_auth
        self.header = settings.delivery.staff_user_header

    def refused(self, request: Request) -> Response | None:
        """None when the request may act; else the answer that refuses it."""
        if not self.expected:
            return PlainTextResponse(
                "the staff page is off: set OFFBOARD_STAFF_AUTH (user:password)\n", 404
            )
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except ValueError:
            decoded = ""
        if scheme.lower() != "basic" or not hmac.compare_digest(decoded, self.expected):
            return PlainTextResponse("sign in\n", 401, headers={"WWW-Authenticate": _REALM})
        if self.header and not request.headers.get(self.header):
            return PlainTextResponse(f"no {self.header} from the sign-in proxy\n", 403)
        if request.method == "POST":
            origin = request.headers.get("origin") or request.headers.get("referer") or ""
            if urlsplit(origin).netloc != request.headers.get("host", ""):
                return PlainTextResponse("a form of this page only\n", 403)
        return None

    def who(self, request: Request, fields: dict[str, str]) -> str:
        return request.headers.get(self.header, "") if self.header else fields.get("name", "")

    async def form(self, request: Request) -> dict[str, str] | None:
        body = await bounded_body(request)
        if body is None:
            return None
        parsed = parse_qs(body.decode("utf-8", "replace"))
        return {k: v[0].strip() for k, v in parsed.items() if v}

    async def index(self, request: Request) -> Response:
        if (answer := self.refused(request)) is not None:
            return answer
        waiting = await run_in_threadpool(pending_approvals, self.settings)
        return page("Support staff", _index(waiting, signed_in=bool(self.header)))

    async def record(self, request: Request) -> Response:
        if (answer := self.refused(request)) is not None:
            return answer
        fields = await self.form(request)
        if fields is None:
            return page("Not recorded", "<p>The form is too large.</p>", 413)
        kind = fields.get("kind", "")
        if kind not in _KINDS:
            return page("Not recorded", f"<p>Choose a kind: {', '.join(_KINDS)}.</p>", 422)
        said = {name: fields.get(name) for name in statement_fields(kind)}
        if "name" in said:
            said["name"] = self.who(request, fields)
        try:
            ref = await run_in_threadpool(
                lambda: keep_statement(self.settings, fields.get("tenant", ""), kind, **said)
            )
        except OffboardingError as error:
            return page("Not recorded", f"<p>{html.escape(str(error))}</p>", 422)
        resumed = ""
        if kind == "acknowledgement" and fields.get("case"):
            try:
                resumed = await run_in_threadpool(
                    _resume, self.settings, self.runs, fields["case"],
                    fields.get("tenant", ""), ref, fields.get("days", ""),
                )  # fmt: skip
            except (OffboardingError, ValueError) as error:
                await run_in_threadpool(discard_statement, self.settings, ref)
                return page("Not recorded", f"<p>{html.escape(str(error))}</p>", 422)
        return page(
            "Statement kept",
            f"<p>The words stay in the pipeline's ledger. Its reference, for Prefect's forms: "
            f'<code id="reference">{ref}</code></p>{resumed}'
            '<p><a href="/staff/">Back</a></p>',
        )

    async def approval(self, request: Request) -> Response:
        if (answer := self.refused(request)) is not None:
            return answer
        fields = await self.form(request)
        if fields is None:
            return page("Not approved", "<p>The form is too large.</p>", 413)
        try:
            asked = await run_in_threadpool(get_approval, self.settings, fields.get("request", ""))
            said = await run_in_threadpool(
                lambda: keep_statement(
                    self.settings, asked.tenant, "approval", name=self.who(request, fields),
                    note=fields.get("note"),
                )
            )  # fmt: skip
        except OffboardingError as error:
            return page("Not approved", f"<p>{html.escape(str(error))}</p>", 422)
        try:
            outcome = await run_in_threadpool(approve, self.settings, self.runs, asked.ref, said)
        except OffboardingError as error:
            await run_in_threadpool(discard_statement, self.settings, said)
            return page("Not approved", f"<p>{html.escape(str(error))}</p>", 422)
        moved = "".join(
            f"<li>destruction run {html.escape(str(s.flow_run_id))} at "
            f"{s.scheduled_for:%Y-%m-%d %H:%M} UTC (deadline {s.deadline:%Y-%m-%d})</li>"
            for s in outcome.rescheduled
        )
        return page(
            "Approved",
            f"<p>{html.escape(asked.action)} of {html.escape(asked.case_id or asked.tenant)} "
            f'approved and carried out.</p><ul>{moved}</ul><p><a href="/staff/">Back</a></p>',
        )


def _resume(settings: Settings, runs: Runs, case_id: str, tenant: str, ref: str, days: str) -> str:
    """Give a case waiting for its acknowledgement the statement just kept."""
    case = case_from_id(case_id)
    if case.tenant != tenant:
        raise ValueError(f"case {case_id} is not of tenant {tenant!r}")
    run_id = delivery_status(settings, case).flow_run_id
    if not awaiting_acknowledgement(settings, case, run_id, runs):
        raise ValueError(f"case {case_id} is not waiting for an acknowledgement")
    given = AcknowledgementInput(statement=ref, days_until_destruction=int(days) if days else None)
    runs.resume(run_id, given)
    return f"<p>Case {html.escape(case_id)} resumed with this acknowledgement.</p>"


def _index(waiting: list[Any], *, signed_in: bool) -> str:
    name = "" if signed_in else (
        '<label>Who says it (name) <input name="name" maxlength="200"></label>'
    )  # fmt: skip
    kinds = "".join(f'<option value="{k}">{k}</option>' for k in _KINDS)
    rows = "".join(
        f"<tr><td><code>{html.escape(a.ref)}</code></td><td>{html.escape(a.action)}</td>"
        f"<td>{html.escape(a.case_id or a.tenant)}</td>"
        f"<td>{a.requested_at:%Y-%m-%d %H:%M} UTC</td><td>"
        + html.escape(", ".join(f"{k} {v}" for k, v in a.params.items() if k != "requested_kind"))
        + '</td><td><form method="post" action="/staff/approve">'
        f'<input type="hidden" name="request" value="{html.escape(a.ref)}">'
        + ("" if signed_in else '<input name="name" placeholder="your name" required> ')
        + '<input name="note" placeholder="why (optional)"> '
        "<button>Approve</button></form></td></tr>"
        for a in waiting
    )
    return (
        "<h2>Record what someone said</h2><p>Names, notes and reasons stay in the pipeline's "
        "ledger; Prefect's forms take the reference this gives.</p>"
        '<form method="post" action="/staff/statement">'
        '<label>Tenant <input name="tenant" required maxlength="128"></label>'
        f'<label>Kind <select name="kind">{kinds}</select></label>{name}'
        '<label>Reason (holds, extensions, terminations) <input name="reason" '
        'maxlength="1000"></label><label>Note <input name="note" maxlength="1000"></label>'
        '<label>Acknowledgement only: resume the waiting case <input name="case" '
        'placeholder="acme-0123456789ab"></label><label>Days until destruction (optional) '
        '<input name="days" type="number" min="0" max="90"></label>'
        "<p><button>Keep it</button></p></form>"
        "<h2>Waiting for a second person</h2><p>Each shortens or lifts a protection of a "
        "client's data. Whoever asked cannot approve it.</p>"
        + (
            f"<table><tr><th>request</th><th>action</th><th>of</th><th>asked</th><th>details"
            f"</th><th></th></tr>{rows}</table>"
            if rows
            else "<p>None.</p>"
        )
    )
