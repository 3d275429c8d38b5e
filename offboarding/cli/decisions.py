"""`offboard` commands. What people decide about a case: acknowledgements, statements,
attestations, legal holds and their release, and the second person's approval."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = ["register"]


def _waiting_run(case_or_run: str) -> str:
    """The offboard flow run of a case id (or a flow run id given as is)."""
    from uuid import UUID

    from offboarding.core.config import Settings
    from offboarding.delivery.delivery import delivery_status
    from offboarding.scheduling.scheduling import case_from_id

    try:
        return str(UUID(case_or_run))
    except ValueError:
        return delivery_status(Settings(), case_from_id(case_or_run)).flow_run_id


def _refused(what: str, invalid: Exception) -> int:
    from pydantic import ValidationError

    assert isinstance(invalid, ValidationError)
    fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in invalid.errors())
    print(f"error: the {what} is refused ({fields}); nothing was sent", file=sys.stderr)
    return 2


def _ack(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.core.errors import NotWaitingError
    from offboarding.people import keep_statement
    from offboarding.runs import AcknowledgementInput

    if args.days is not None and not 0 <= args.days <= 90:
        print(
            "error: the acknowledgement is refused (--days must be 0 to 90, clause 2.3.2); "
            "nothing was sent",
            file=sys.stderr,
        )
        return 2
    run_id = _waiting_run(args.case)
    runs = PrefectRuns()
    tenant = dict(runs.waiting_cases()).get(run_id)
    if tenant is None:
        raise NotWaitingError(f"case {args.case} is not waiting for an acknowledgement")
    # Who acknowledges and the note stay in the ledger: Prefect gets the reference only.
    said = keep_statement(Settings(), tenant, "acknowledgement", name=args.by, note=args.note)
    try:
        acknowledgement = AcknowledgementInput(statement=said, days_until_destruction=args.days)
    except ValidationError as invalid:
        return _refused("acknowledgement", invalid)
    runs.resume(run_id, acknowledgement)
    print(f"acknowledged: case {args.case} resumes (flow run {run_id}; statement {said})")
    grace = Settings().destruction.grace
    if args.days is not None and timedelta(days=args.days) < grace:
        print(f"  {args.days} day(s) is sooner than the standard grace ({grace}): "
              "destruction stays at the grace until a second person approves "
              "(`offboard approvals`)")  # fmt: skip
    return 0


def _statement(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement

    fields = {"name": args.name, "note": args.note, "reason": args.reason,
              "contact": args.contact, "text": args.text}  # fmt: skip
    kept = keep_statement(
        Settings(), args.tenant, args.kind, **{k: v for k, v in fields.items() if v is not None}
    )
    print(kept)
    return 0


def _attest(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.adapter import resume_attestation
    from offboarding.core.config import Settings
    from offboarding.core.errors import NotWaitingError
    from offboarding.people import keep_statement
    from offboarding.runs import AttestationInput
    from offboarding.scheduling.scheduling import case_from_id, current_schedule

    case = case_from_id(args.case)
    said = keep_statement(Settings(), case.tenant, "attestation", name=args.by)
    try:
        given = AttestationInput(statement=said, action=args.action, evidence=args.evidence)
    except ValidationError as invalid:
        return _refused("attestation", invalid)
    schedule = current_schedule(Settings(), case)
    if schedule is None or schedule.flow_run_id is None:
        raise NotWaitingError(f"case {args.case} has no destruction run (not scheduled yet)")
    resume_attestation(schedule.flow_run_id, args.system, given)
    print(f"attested: {args.system} of case {args.case}; its destroy run resumes")
    return 0


def _hold(args: argparse.Namespace) -> int:
    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.scheduling.scheduling import place_hold

    settings = Settings()
    said = keep_statement(settings, args.tenant, "hold", name=args.by, reason=args.reason)
    result = place_hold(settings, PrefectRuns(), args.tenant, said)
    print(
        f"legal hold placed on {result.tenant}; destruction runs cancelled: "
        f"{', '.join(result.cancelled_runs) or 'none were scheduled'}"
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _release(args: argparse.Namespace) -> int:
    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.scheduling.scheduling import release_hold

    settings = Settings()
    said = keep_statement(settings, args.tenant, "hold", name=args.by)
    asked = release_hold(settings, PrefectRuns(), args.tenant, said, now=args.now)
    print(
        f"lifting the legal hold on {args.tenant}{' and destroying now' if args.now else ''} "
        f"waits for a second person: request {asked.ref}. The hold stays until they approve:\n"
        f"  offboard approve {asked.ref} --by NAME   (or the staff page, or the approve form)"
    )
    return 0


def _approve(args: argparse.Namespace) -> int:
    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.scheduling.approvals import get_approval
    from offboarding.scheduling.scheduling import approve

    settings = Settings()
    asked = get_approval(settings, args.request)
    said = keep_statement(settings, asked.tenant, "approval", name=args.by, note=args.note)
    outcome = approve(settings, PrefectRuns(), args.request, said)
    print(f"{outcome.approval.action} of {asked.case_id or asked.tenant} approved and done")
    for schedule in outcome.rescheduled:
        print(
            f"  destruction run {schedule.flow_run_id} scheduled for "
            f"{schedule.scheduled_for:%Y-%m-%d %H:%M} UTC (deadline "
            f"{schedule.deadline:%Y-%m-%d %H:%M} UTC)"
        )
    return 0


def _approvals(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.scheduling.approvals import pending_approvals

    waiting = pending_approvals(Settings(), args.tenant)
    for approval in waiting:
        detail = ", ".join(f"{k} {v}" for k, v in approval.params.items() if k != "requested_kind")
        print(f"{approval.ref}  {approval.action:<18} {approval.case_id or approval.tenant:<32} "
              f"asked {approval.requested_at:%Y-%m-%d %H:%M}  {detail}")  # fmt: skip
    print(f"{len(waiting)} request(s) waiting for a second person")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's commands to the `offboard` parser."""
    ack = commands.add_parser("ack", help="acknowledge receipt for a waiting case")
    ack.add_argument("case", help="the case id (e.g. acme-0123456789ab) or its flow run id")
    ack.add_argument("--by", required=True, help="who acknowledges")
    ack.add_argument("--days", type=int, help="days until destruction (0-90)")
    ack.add_argument("--note", help="optional note")
    ack.set_defaults(run=_ack)

    statement = commands.add_parser(
        "statement",
        help="keep what a person said (name, note, reason) in the ledger; prints the reference "
        "that Prefect's forms and flow parameters take instead",
    )
    statement.add_argument("tenant")
    statement.add_argument(
        "kind",
        choices=["acknowledgement", "termination", "attestation", "hold", "postponement",
                 "request", "extension", "answer", "rule", "approval"],
    )  # fmt: skip
    statement.add_argument("--name", help="who makes the statement")
    statement.add_argument("--note", help="acknowledgement: the optional note")
    statement.add_argument("--reason", help="termination, hold or extension: why")
    statement.add_argument("--contact", help="request (sent directly): how to reach the person")
    statement.add_argument("--text", help="request (sent directly): what they asked")
    statement.set_defaults(run=_statement)

    attest = commands.add_parser(
        "attest", help="confirm an attested system's destruction for a waiting destroy run"
    )
    attest.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    attest.add_argument("system", help="the data map's name of the attested system")
    attest.add_argument(
        "--by", required=True, help="who did it (kept in the ledger; the record has a pseudonym)"
    )
    attest.add_argument("--action", required=True, help="what was done (no personal data)")
    attest.add_argument("--evidence", required=True, help="where the proof is kept")
    attest.set_defaults(run=_attest)

    hold = commands.add_parser("hold", help="place a legal hold: cancel scheduled destruction")
    hold.add_argument("tenant")
    hold.add_argument("--reason", required=True, help="e.g. the court order's reference")
    hold.add_argument("--by", default=getpass.getuser(), help="who places the hold")
    hold.set_defaults(run=_hold)

    release = commands.add_parser(
        "release", help="ask to lift a legal hold (a second person approves: offboard approve)"
    )
    release.add_argument("tenant")
    release.add_argument("--by", default=getpass.getuser(), help="who asks to lift the hold")
    release.add_argument(
        "--now", action="store_true", help="destroy at once, even past the deadline"
    )
    release.set_defaults(run=_release)

    approval = commands.add_parser(
        "approve", help="approve, as a second person, a request that shortens a protection"
    )
    approval.add_argument("request", help="the request's reference, ap-...")
    approval.add_argument("--by", default=getpass.getuser(), help="who approves (not who asked)")
    approval.add_argument("--note", help="why, for the record (kept in the ledger)")
    approval.set_defaults(run=_approve)

    approvals = commands.add_parser("approvals", help="requests waiting for a second person")
    approvals.add_argument("tenant", nargs="?")
    approvals.set_defaults(run=_approvals)
