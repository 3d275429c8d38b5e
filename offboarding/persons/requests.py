"""Requests about one person (clause 2.2.7), and the month the contract gives to answer them.

The client's administrator opens a request for a person of its tenant (access, portability,
erasure, rectification, restriction): it is recorded with its deadline, one month from receipt
(PostgreSQL's calendar arithmetic: 31 January is due on 28 February). A request that reaches
the operator directly, from the person, is the client's to decide: it is recorded, forwarded to
the client's contact at once ("dès réception"), and never executed by the operator. The
person's own words (name, address, text) are a statement in the ledger (offboarding.people);
the request record holds its reference only.

The deadline may be extended once, by two months, with a recorded reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.delivery.mail import compose, send
from offboarding.people import keep_statement, pseudonym, statement
from offboarding.persons.records import archive_signed
from offboarding.persons.scope import person_footprint
from offboarding.registry import TenantRegistry
from offboarding.trail.records import PersonRequestClosed

__all__ = [
    "CARRIED_OUT_KINDS",
    "REQUEST_KINDS",
    "PersonRequest",
    "RequestKind",
    "close_request",
    "extend_request",
    "forward_direct_request",
    "forward_statement",
    "get_request",
    "list_requests",
    "mark_answered",
    "open_request",
    "requests_due",
    "to_carry_out",
]


class RequestKind(StrEnum):
    """What a person asks of their data (GDPR articles 15-18 and 20), and who carries it out:
    the pipeline copies (access, portability) and erases; the client's administrator edits
    and restricts in the application, and the request is closed on their word. Each kind's
    handler is `offboarding.persons.carry.HANDLERS`."""

    ACCESS = "access"
    PORTABILITY = "portability"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"

    @property
    def by_the_pipeline(self) -> bool:
        return self in _CARRIED_OUT


_CARRIED_OUT = frozenset({RequestKind.ACCESS, RequestKind.PORTABILITY, RequestKind.ERASURE})
REQUEST_KINDS: tuple[RequestKind, ...] = tuple(RequestKind)
CARRIED_OUT_KINDS: tuple[RequestKind, ...] = tuple(k for k in RequestKind if k.by_the_pipeline)
_COLUMNS = (
    "ref, tenant, person, kind, origin, statement, received_at, due_on, extended_by, status, "
    "forwarded_at, answered_at"
)


@dataclass(frozen=True)
class PersonRequest:
    ref: str
    tenant: str
    person: str | None  # the person's key; None for a direct request (the client finds them)
    kind: RequestKind
    origin: Literal["client", "direct"]
    statement: str | None  # a direct request's words, in the ledger
    received_at: datetime
    due_on: date
    extended_by: str | None  # the statement giving the extension's reason
    status: Literal["open", "forwarded", "answered"]
    forwarded_at: datetime | None
    answered_at: datetime | None

    def overdue(self, today: date) -> bool:
        return self.status == "open" and today > self.due_on


def _row(row: dict[str, Any]) -> PersonRequest:
    return PersonRequest(**{**row, "kind": RequestKind(row["kind"])})


def _kind(kind: str) -> RequestKind:
    try:
        return RequestKind(kind)
    except ValueError:
        raise TenantError(
            f"request kind {kind!r} is not one of {', '.join(REQUEST_KINDS)}"
        ) from None


def _insert(
    settings: Settings,
    *,
    tenant: str,
    person: str | None,
    kind: RequestKind,
    origin: str,
    statement_ref: str | None,
    received_at: datetime,
    status: str,
) -> PersonRequest:
    ref = f"pr-{secrets.token_hex(12)}"
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            f"INSERT INTO offboarding.person_requests (ref, tenant, person, kind, origin, "
            "statement, received_at, due_on, status) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "((%s AT TIME ZONE 'UTC') + interval '1 month')::date, %s) "
            f"RETURNING {_COLUMNS}",
            (ref, tenant, person, kind, origin, statement_ref, received_at, received_at, status),
        ).fetchone()
    assert row is not None
    return _row(row)


def open_request(
    settings: Settings,
    tenant: str,
    person: str,
    kind: str,
    *,
    received_at: datetime | None = None,
) -> PersonRequest:
    """Record the client's request about one of its people; due one month after receipt. The
    person must be a person of the tenant, and the data map must cover every system."""
    tenant = validate_tenant_id(tenant)
    TenantRegistry(settings).get(tenant)
    person_footprint(settings, tenant, person)  # the person exists; the scope is complete
    return _insert(
        settings, tenant=tenant, person=person, kind=_kind(kind), origin="client",
        statement_ref=None, received_at=received_at or datetime.now(UTC), status="open",
    )  # fmt: skip


def forward_direct_request(
    settings: Settings,
    tenant: str,
    kind: str,
    *,
    name: str,
    contact: str,
    text: str = "",
    received_at: datetime | None = None,
) -> PersonRequest:
    """A person asked the operator directly: keep their words as a statement, record the
    request, and forward it to the client's contact now. Nothing of the person's data is
    touched: the client decides, then opens its own request if it wants one carried out."""
    _kind(kind)  # refused before the person's words are kept
    said = keep_statement(settings, validate_tenant_id(tenant), "request", name=name,
                          contact=contact, text=text)  # fmt: skip
    return forward_statement(settings, tenant, kind, said, received_at=received_at)


def forward_statement(
    settings: Settings,
    tenant: str,
    kind: str,
    statement_ref: str,
    *,
    received_at: datetime | None = None,
) -> PersonRequest:
    """Record and forward a direct request whose words are already a statement (kept by
    `offboard statement TENANT request`, so the Prefect form carries its reference only)."""
    tenant = validate_tenant_id(tenant)
    record = TenantRegistry(settings).get(tenant)
    to = record.require_contact()
    said = statement(settings, statement_ref, tenant, "request")
    name, contact = said.field("name"), said.field("contact")
    if not name or not contact:
        raise TenantError(
            f"statement {statement_ref} gives no name or no contact: a forwarded request must "
            "say who asked and how to answer them (offboard statement TENANT request --name "
            "... --contact ...)"
        )
    text = said.field("text")
    received = received_at or datetime.now(UTC)
    request = _insert(
        settings, tenant=tenant, person=None, kind=_kind(kind), origin="direct",
        statement_ref=statement_ref, received_at=received, status="forwarded",
    )  # fmt: skip
    body = (
        f"A person has sent us, your processor, a request about their data in your space "
        f"{record.name} ({tenant}). Clause 2.2.7 of our agreement makes the answer yours: we "
        "have not acted on it and will not unless you ask us to.\n\n"
        f"  kind of request:  {kind}\n"
        f"  received:         {received:%Y-%m-%d %H:%M} UTC\n"
        f"  from:             {name} <{contact}>\n"
        f"  their words:      {text or '(none)'}\n"
        f"  our reference:    {request.ref}\n\n"
        f"The law gives one month from receipt to answer: by {request.due_on:%Y-%m-%d}. To have "
        "us carry it out (a copy of the person's data, or its erasure), open the request from "
        "your administration console, naming the person's account.\n"
    )
    message = compose(
        settings, to=to, subject=f"A data protection request for {record.name}", body=body
    )
    send(settings, message, outbox_name=f"request-{request.ref}")
    with TenantRegistry(settings).connect() as conn:
        conn.execute(
            "UPDATE offboarding.person_requests SET forwarded_at = now() WHERE ref = %s",
            (request.ref,),
        )
    return get_request(settings, request.ref)


def get_request(settings: Settings, ref: str) -> PersonRequest:
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM offboarding.person_requests WHERE ref = %s", (ref,)
        ).fetchone()
    if row is None:
        raise TenantError(f"no person request {ref!r}: `offboard request list` shows them")
    return _row(row)


def extend_request(settings: Settings, ref: str, *, name: str, reason: str) -> PersonRequest:
    """Extend an open request's deadline once, by two months, for the reason given (its
    complexity, or the number of requests): the reason is a statement in the ledger."""
    request = get_request(settings, ref)
    if request.extended_by is not None:
        raise TenantError(
            f"request {ref} was already extended (to {request.due_on}): the contract allows "
            "one extension; answer it by then"
        )
    if request.status != "open":
        raise TenantError(f"request {ref} is {request.status}: only an open one is extended")
    said = keep_statement(settings, request.tenant, "extension", name=name, reason=reason)
    with TenantRegistry(settings).connect() as conn:
        conn.execute(
            "UPDATE offboarding.person_requests SET due_on = (due_on + interval '2 months')::date, "
            "extended_by = %s WHERE ref = %s AND extended_by IS NULL",
            (said, ref),
        )
    return get_request(settings, ref)


def to_carry_out(
    settings: Settings, ref: str, kinds: tuple[RequestKind, ...]
) -> tuple[PersonRequest, str]:
    """The request `ref` and its person, if it is an open request of the client, naming a
    person, of one of `kinds`: what the pipeline carries out."""
    request = get_request(settings, ref)
    if request.kind not in kinds:
        raise TenantError(f"request {ref} is a {request.kind} request, not {' or '.join(kinds)}")
    if request.status != "open" or request.person is None:
        raise TenantError(
            f"request {ref} is {request.status}: only an open request of the client, naming a "
            "person, is carried out (a direct request goes to the client, who opens its own)"
        )
    return request, request.person


def mark_answered(settings: Settings, ref: str) -> PersonRequest:
    """The request is answered now (its evidence is in the archive)."""
    with TenantRegistry(settings).connect() as conn:
        conn.execute(
            "UPDATE offboarding.person_requests SET status = 'answered', answered_at = now() "
            "WHERE ref = %s AND status = 'open'",
            (ref,),
        )
    return get_request(settings, ref)


def close_request(settings: Settings, ref: str, *, name: str, note: str = "") -> PersonRequest:
    """An open request the client's administrator carried out in the application (a
    rectification or a restriction: the pipeline copies and erases, it does not edit), closed
    on their word: kept as a statement, a signed record archived, the deadline watch told."""
    request = get_request(settings, ref)
    if request.status != "open":
        raise TenantError(f"request {ref} is {request.status}: only an open one is closed")
    if request.kind.by_the_pipeline:
        raise TenantError(
            f"request {ref} is an {request.kind} request: the pipeline carries it out, with its "
            f"evidence (offboard request run {ref}, or the person-request deployment)"
        )
    said = keep_statement(settings, request.tenant, "answer", name=name, note=note)
    archive_signed(settings, f"persons/{request.tenant}/{ref}/closed.json", PersonRequestClosed(
        request=ref, tenant=request.tenant,
        kind=request.kind, received_at=request.received_at,
        due_on=request.due_on.isoformat(), statement=said,
        by=pseudonym(settings, CaseRef(tenant=request.tenant, case_id=ref), name),
    ))  # fmt: skip
    return mark_answered(settings, ref)


def list_requests(settings: Settings, tenant: str | None = None) -> list[PersonRequest]:
    """Every request, or a tenant's, oldest deadline first."""
    where, params = ("WHERE tenant = %s", (tenant,)) if tenant else ("", ())
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM offboarding.person_requests {where} ORDER BY due_on, ref",
            params,
        ).fetchall()
    return [_row(r) for r in rows]


def requests_due(
    settings: Settings, today: date, *, within: int = 7
) -> tuple[list[PersonRequest], list[PersonRequest]]:
    """Open requests due within `within` days, and those past their deadline (the deadline
    watch flags the first and fails on the second)."""
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM offboarding.person_requests WHERE status = 'open' "
            "AND due_on <= %s::date + %s ORDER BY due_on, ref",
            (today, within),
        ).fetchall()
    requests = [_row(r) for r in rows]
    return [r for r in requests if not r.overdue(today)], [r for r in requests if r.overdue(today)]
