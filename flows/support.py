"""Support staff's actions, each a deployment with a form in the Prefect UI.

    reissue-link           send the client's contact new download links
    legal-hold             place a legal hold (cancels destruction), or ask to lift it
    postpone-destruction   move a scheduled destruction later, never past the contract's limit
    approve                a second person approves what shortens or lifts a protection
    verify-destruction     re-scan every location of a destroyed case, on the record

Starting a case by hand is the `offboard` deployment's own form; acknowledging for the client is
the Resume form of the waiting `offboard` run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from prefect import flow

from flows import adapter
from offboarding.delivery.delivery import send_links
from offboarding.destruction.destruction import reverify
from offboarding.runs import StatementRef
from offboarding.scheduling.approvals import Approval
from offboarding.scheduling.scheduling import approve, case_from_id, place_hold, release_hold
from offboarding.scheduling.scheduling import postpone_destruction as postpone


@flow(name="reissue-link", flow_run_name="reissue-link-{case_id}")
def reissue_link(case_id: str) -> str:
    """Send the client's contact new download links for a case.

    Args:
        case_id: The case, e.g. acme-0123456789ab (in the case summary and the client's e-mail).
    """
    issued = send_links(adapter.settings(), case_from_id(case_id), "reissue")
    adapter.logger().info("new links sent for %s, valid until %s", case_id, issued.expires_at)
    return issued.expires_at.isoformat()


@flow(name="legal-hold", flow_run_name="legal-hold-{action}-{tenant}")
def legal_hold(tenant: str, action: Literal["place", "lift"], statement: StatementRef) -> list[str]:
    """Place a legal hold (scheduled destruction is cancelled) or lift it (destruction is
    scheduled again for its original date, within its deadline).

    Args:
        tenant: The tenant's id, exactly as in the tenants registry.
        action: place, or lift.
        statement: The hold statement's reference (st-…): who asks and, to place, the order
            or request, kept outside Prefect by the staff page (/staff/) or `offboard
            statement TENANT hold --name … --reason …`.
    """
    settings = adapter.settings()
    if action == "place":
        result = place_hold(settings, adapter.PrefectRuns(), tenant, statement)
        for note in result.notes:
            adapter.logger().warning("%s", note)
        return result.cancelled_runs
    asked = release_hold(settings, adapter.PrefectRuns(), tenant, statement)
    adapter.logger().info(
        "lifting the hold on %s waits for a second person: approval request %s (the approve "
        "form, the staff page or `offboard approve`)", tenant, asked.ref,
    )  # fmt: skip
    return [asked.ref]


@flow(name="postpone-destruction", flow_run_name="postpone-destruction-{case_id}")
def postpone_destruction(case_id: str, destroy_on: datetime, statement: StatementRef) -> str:
    """Move the case's scheduled destruction to a later time, within the 90-day limit.

    Args:
        case_id: The case, e.g. acme-0123456789ab.
        destroy_on: The new time (UTC); at most the deadline minus any lingering delay and a
            2-day margin.
        statement: Who asked for it, as a postponement statement's reference (st-…, from
            the staff page, /staff/, or `offboard statement TENANT postponement --name …`).
    """
    done = postpone(
        adapter.settings(), adapter.PrefectRuns(), case_from_id(case_id), destroy_on, statement
    )
    if isinstance(done, Approval):
        adapter.logger().info(
            "postponing %s so close to its limit waits for a second person: approval request "
            "%s", case_id, done.ref,
        )  # fmt: skip
        return done.ref
    return str(done.flow_run_id)


@flow(name="approve", flow_run_name="approve-{request}")
def approve_request(request: str, statement: StatementRef) -> list[str]:
    """Approve, as a second person, a request that shortens or lifts a protection (an earlier
    destruction, lifting a legal hold, a postponement to the limit); it is then carried out.
    The person who asked cannot approve it.

    Args:
        request: The request's reference (ap-…), from `offboard approvals` or the staff page.
        statement: Your approval statement's reference (st-…, from the staff page or
            `offboard statement TENANT approval --name …`).
    """
    outcome = approve(adapter.settings(), adapter.PrefectRuns(), request, statement)
    return [str(s.flow_run_id) for s in outcome.rescheduled]


@flow(name="verify-destruction", flow_run_name="verify-destruction-{case_id}")
def verify_destruction(case_id: str) -> dict[str, int]:
    """Re-scan every location of a case for anything of its tenant, and record the result.

    Args:
        case_id: The case, e.g. acme-0123456789ab.
    """
    case = case_from_id(case_id)
    results = reverify(adapter.settings(), case)
    adapter.publish_table(
        case, "reverification",
        [{"location": n, "left": r.items, "verification": r.verification}
         for n, r in results.items()],
        f"Re-verification of case {case_id}",
    )  # fmt: skip
    return {name: r.items for name, r in results.items()}
