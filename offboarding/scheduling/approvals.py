"""Four eyes: an action that shortens or lifts a protection of a tenant's data waits for a
second person (DESIGN.md, principle 9).

    early-destruction   an acknowledgement with fewer days than the standard grace (by the
                        client's contact or by staff): destruction stays planned at the grace
                        until approved, then moves earlier
    lift-hold           lifting a legal hold: the hold stays until approved
    lift-hold-now       lifting it and destroying at once (`release --now`), even past the
                        deadline
    postpone-to-limit   a postponement into the last week before the latest possible start

A request is kept in the pipeline's ledger (`offboarding.approvals`) with the statement of who
asked, and recorded in the case's trail (`approval-requested`). The approval is a statement of
its own (kind `approval`): the same person (by name, whatever the spacing, case or Unicode form;
by the identity the SSO proxy vouches for, where the web page sits behind one) cannot approve
their own request. `offboarding.scheduling.scheduling.approve` carries it out and records
`approval-given`; the certificate shows both people as the case's pseudonyms.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import TenantError
from offboarding.core.records import CaseRef
from offboarding.people import StatementKind, pseudonym, same_person, statement
from offboarding.registry import TenantRegistry
from offboarding.trail import AuditTrail, events

__all__ = [
    "FOUR_EYES_WINDOW",
    "Approval",
    "claim_approval",
    "get_approval",
    "pending_approvals",
    "record_given",
    "request_approval",
    "require_second_person",
    "unclaim_approval",
]

# A postponement that leaves less than this before the latest possible start needs a second
# person: it spends the margin that keeps destruction within the 90 days.
FOUR_EYES_WINDOW = timedelta(days=7)

_COLUMNS = (
    "ref, tenant, case_id, action, params, requested_statement, requested_at, "
    "approved_statement, approved_at, status"
)


@dataclass(frozen=True)
class Approval:
    ref: str
    tenant: str
    case_id: str | None  # None: a tenant's hold, across its cases
    action: events.ApprovalAction
    params: dict[str, Any]
    requested_statement: str
    requested_at: datetime
    approved_statement: str | None
    approved_at: datetime | None
    status: str

    @property
    def case(self) -> CaseRef | None:
        return CaseRef(tenant=self.tenant, case_id=self.case_id) if self.case_id else None


def _row(row: dict[str, Any]) -> Approval:
    return Approval(**{**row, "params": dict(row["params"] or {})})


def request_approval(
    settings: Settings,
    tenant: str,
    cases: list[CaseRef],
    action: events.ApprovalAction,
    said: str,
    said_kind: StatementKind,
    *,
    case: CaseRef | None = None,
    days: int | None = None,
    destroy_on: datetime | None = None,
) -> Approval:
    """Record a request that waits for a second person; each case in `cases` gets it in its
    trail (with the requester as the case's pseudonym)."""
    validate_tenant_id(tenant)
    asked = statement(settings, said, tenant, said_kind)
    ref = f"ap-{secrets.token_hex(12)}"
    params: dict[str, Any] = {"requested_kind": said_kind}
    if days is not None:
        params["days_until_destruction"] = days
    if destroy_on is not None:
        params["destroy_on"] = destroy_on.isoformat()
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            "INSERT INTO offboarding.approvals (ref, tenant, case_id, action, params, "
            f"requested_statement) VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (ref, tenant, case.case_id if case else None, action, Jsonb(params), asked.ref),
        ).fetchone()
    assert row is not None
    for each in cases:
        AuditTrail.open(settings, each).record(
            events.ApprovalRequested(
                request=ref, action=action, statement=asked.ref,
                by_pseudonym=pseudonym(settings, each, asked.field("name")),
                days_until_destruction=days, destroy_on=destroy_on,
            )
        )  # fmt: skip
    return _row(row)


def get_approval(settings: Settings, ref: str) -> Approval:
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM offboarding.approvals WHERE ref = %s", (ref,)
        ).fetchone()
    if row is None:
        raise TenantError(
            f"no approval request {ref[:40]!r}: `offboard approvals` lists the pending ones"
        )
    return _row(row)


def pending_approvals(settings: Settings, tenant: str | None = None) -> list[Approval]:
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM offboarding.approvals WHERE status = 'pending' AND "
            "(%s::text IS NULL OR tenant = %s) ORDER BY requested_at, ref",
            (tenant, tenant),
        ).fetchall()
    return [_row(r) for r in rows]


def require_second_person(settings: Settings, approval: Approval, said: str) -> str:
    """The approver's statement (kind `approval`, of the request's tenant), refused when it
    names the person who asked; returns the approver's name."""
    if approval.status != "pending":
        raise TenantError(f"approval request {approval.ref} is {approval.status}: nothing to do")
    approver = statement(settings, said, approval.tenant, "approval")
    kind: StatementKind = approval.params.get("requested_kind", "hold")
    asker = statement(settings, approval.requested_statement, approval.tenant, kind)
    if same_person(approver.field("name"), asker.field("name")):
        raise TenantError(
            f"approval request {approval.ref}: the person who asked for it cannot approve it. "
            "A second person records their own approval statement "
            f"(`offboard statement {approval.tenant} approval --name …`) and approves"
        )
    return approver.field("name")


def claim_approval(settings: Settings, approval: Approval, said: str) -> None:
    """Mark the request approved before it is carried out, so two approvers racing carry it
    out once; `unclaim_approval` puts it back when carrying it out fails."""
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            "UPDATE offboarding.approvals SET status = 'approved', approved_statement = %s, "
            "approved_at = now() WHERE ref = %s AND status = 'pending' RETURNING ref",
            (said, approval.ref),
        ).fetchone()
    if row is None:
        raise TenantError(f"approval request {approval.ref} was approved meanwhile")


def unclaim_approval(settings: Settings, approval: Approval) -> None:
    with TenantRegistry(settings).connect() as conn:
        conn.execute(
            "UPDATE offboarding.approvals SET status = 'pending', approved_statement = NULL, "
            "approved_at = NULL WHERE ref = %s",
            (approval.ref,),
        )


def record_given(
    settings: Settings, approval: Approval, said: str, name: str, cases: list[CaseRef]
) -> None:
    """The approval, carried out, in each case's trail (the approver as its pseudonym)."""
    for case in cases:
        AuditTrail.open(settings, case).record(
            events.ApprovalGiven(
                request=approval.ref, action=approval.action, statement=said,
                by_pseudonym=pseudonym(settings, case, name),
            ),
            once=f"approval-given:{approval.ref}",
        )  # fmt: skip
