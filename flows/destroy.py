"""Destruction of every copy of a tenant's data, verified and certified.

check the warrant (the case's signed trail: delivered, acknowledged, planned for now, no
hold; its dates) -> check isolation (the tenant's rows listed; no other row references
them) -> destroy each location (each deleted row or object checked to be the tenant's) ->
verify each -> certify and archive. With OFFBOARD_NEIGHBOURS_AUDIT, digests of every other
tenant's data are taken before and after as well (quiet platforms only: see its setting).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import adapter
from offboarding.core.errors import UnauthorisedDestructionError
from offboarding.core.records import CaseRef, case_from_id
from offboarding.destruction import attestation
from offboarding.destruction import destruction as stages
from offboarding.destruction.warrant import Warrant
from offboarding.locations import Remaining, Removal, destruction_order
from offboarding.runs import AttestationInput


def _plan_being_recorded(task: Any, run: Any, state: Any) -> bool:
    """Ask the trail again only when its plan may not be recorded yet: a run created to start
    at once can begin before the scheduling step has written the plan that names it."""
    try:
        state.result()
    except UnauthorisedDestructionError as refused:
        return refused.may_pass_later
    except Exception:  # any other failure is final
        return False
    return False


@task(name="check-warrant", task_run_name="check-warrant-{case.case_id}", cache_policy=NO_CACHE,
      retries=3, retry_delay_seconds=5, retry_condition_fn=_plan_being_recorded)  # fmt: skip
def check_warrant(case: CaseRef) -> Warrant:
    """Asked at every start (a resumed run too); the stages below ask again themselves."""
    return stages.check_warrant(adapter.settings(), case)


@task(name="fingerprint-neighbours", task_run_name="fingerprint-neighbours-{moment}-{case.tenant}")
def fingerprint_neighbours(case: CaseRef, moment: str, excluded: list[str]) -> dict[str, str]:
    """`moment` ('before'/'after') keeps the two fingerprints apart in the task cache."""
    return stages.neighbours_digests(adapter.settings(), case, excluded)


@task(name="check-isolation", task_run_name="check-isolation-{case.tenant}")
def check_isolation(case: CaseRef) -> dict[str, str]:
    """Stops the case, every copy still in place, if deleting would touch another's rows."""
    return stages.check_isolation(adapter.settings(), case)


@task(name="tenants-in-offboarding", task_run_name="tenants-in-offboarding-{case.tenant}")
def tenants_in_offboarding(case: CaseRef) -> list[str]:
    """Fixed once, so both fingerprints leave out the same tenants."""
    return stages.tenants_in_offboarding(adapter.settings(), case)


@task(name="destroy", task_run_name="destroy-{location}-{case.tenant}", retries=2,
      retry_delay_seconds=10)  # fmt: skip
def destroy_location(case: CaseRef, location: str) -> Removal:
    return stages.destroy_location(adapter.settings(), case, location)


@task(name="verify", task_run_name="verify-{location}-{case.tenant}", retries=2,
      retry_delay_seconds=10, cache_policy=NO_CACHE)  # fmt: skip
def verify_location(case: CaseRef, location: str) -> Remaining:
    return stages.verify_location(adapter.settings(), case, location)


@task(name="destruction-started", task_run_name="destruction-started-{case.tenant}")
def destruction_started(case: CaseRef) -> datetime:
    """The start of destruction, fixed at the first attempt (cached in the run): a run that
    waited for an attestation resumes from the top and keeps this time."""
    return datetime.now(UTC)


@task(name="request-attestations", task_run_name="request-attestations-{case.tenant}",
      cache_policy=NO_CACHE)  # fmt: skip
def request_attestations(
    case: CaseRef, started_at: datetime, deadline: datetime
) -> list[attestation.AttestationDue]:
    return attestation.request_attestations(adapter.settings(), case, started_at, deadline)


@task(name="record-attestation", task_run_name="record-attestation-{system}-{case.tenant}",
      cache_policy=NO_CACHE)  # fmt: skip
def record_attestation(case: CaseRef, system: str, given: AttestationInput) -> None:
    attestation.attest(adapter.settings(), case, system, given, datetime.now(UTC))


@task(name="certify", task_run_name="certify-{case.tenant}")
def certify(case: CaseRef, evidence: stages.DestructionEvidence) -> str:
    settings = adapter.settings()
    archived = stages.certify(
        settings, case, evidence, performed_by=f"flow run {adapter.current_run_id()}"
    )
    adapter.logger().info("certificate of destruction archived as %s", archived.key)
    archive_url = settings.store_url("archive").rstrip("/")
    adapter.link_to_certificate(case, f"{archive_url}/{archived.key}")
    return archived.key


def _publish_evidence(
    case: CaseRef, order: tuple[str, ...], removals: dict[str, Removal],
    remaining: dict[str, Remaining],
) -> None:  # fmt: skip
    """Each location's evidence, as a table in the UI: counts and methods, never data."""
    adapter.publish_table(
        case, "destruction",
        [{"location": n, "method": removals[n].method, "items before": removals[n].items_before,
          "bytes before": removals[n].bytes_before, "removed": removals[n].items_removed,
          "left": remaining[n].items, "lingering until": remaining[n].pending_until or "-",
          "verification": remaining[n].verification} for n in order],
        f"Per-location destruction evidence of case {case.case_id}",
    )  # fmt: skip


@flow(name="destroy", flow_run_name="destroy-{case_id}", persist_result=True)
def destroy(
    case_id: str,
    tenant: str | None = None,
    acknowledged_at: datetime | None = None,
    deadline: datetime | None = None,
) -> str:
    """Destroy every copy of a case's data, prove it, and archive a signed certificate.

    Only for a case whose signed trail shows it delivered, acknowledged (or deemed delivered)
    and planned for destruction by now, with no legal hold: anything else is refused with
    nothing touched. Scheduled by the offboard flow at acknowledgement; its dates come from the
    trail, never from these parameters.

    Args:
        case_id: The case, e.g. acme-0123456789ab.
        tenant: Only in runs scheduled by earlier releases: must agree with the case id.
        acknowledged_at: Only in runs scheduled by earlier releases: must agree with the trail.
        deadline: Only in runs scheduled by earlier releases: must agree with the trail.
    """
    warrant = check_warrant(case_from_id(case_id))
    case = warrant.case
    stages.require_agreement(
        warrant, tenant=tenant, acknowledged_at=acknowledged_at, deadline=deadline
    )
    settings = adapter.settings()
    audit = settings.destruction.neighbours_audit
    started_at = destruction_started(case)
    order = destruction_order(settings)
    attested = list(attestation.attested_systems(settings))
    steps = [f"destroy {n}" for n in order] + [f"verify {n}" for n in order]
    steps += [f"attested {n}" for n in attested]
    progress = adapter.Progress(["check isolation", *steps, "certify"]).start(case, "destroy")
    # A global limit caps destructions running at once (OFFBOARD_DESTRUCTION_CONCURRENCY).
    with adapter.exclusive(adapter.DESTRUCTION_LIMIT_NAME):
        shared = check_isolation(case)
        progress.done("check isolation")
        excluded = tenants_in_offboarding(case) if audit else []
        before = fingerprint_neighbours(case, "before", excluded) if audit else None
        removals = {}
        for name in order:
            removals[name] = destroy_location(case, name)
            progress.done(f"destroy {name}")
        remaining = {}
        for name in order:
            remaining[name] = verify_location(case, name)
            progress.done(f"verify {name}")
        after = fingerprint_neighbours(case, "after", excluded) if audit else None
    _publish_evidence(case, order, removals, remaining)
    # Systems only their role can reach: each waits, holding no worker, for its confirmation.
    for due in request_attestations(case, started_at, warrant.deadline):
        adapter.publish_case_summary(case, {
            "tenant": case.tenant, "state": f"waiting for the attestation of {due.system}",
            "role": due.role, "procedure": due.procedure, "due": due.due,
            "how": "Resume this run and fill in the form (who, what was done, evidence)",
        }, title="Destruction of case")  # fmt: skip
        given = adapter.await_attestation(case, due)
        record_attestation(case, due.system, given)
    for name in attested:
        progress.done(f"attested {name}")
    key = certify(
        case,
        stages.DestructionEvidence(
            started_at=started_at,
            removals=removals,
            remaining=remaining,
            shared_rows=shared,
            neighbours_before=before,
            neighbours_after=after,
            neighbours_excluded=excluded,
        ),
    )
    progress.done("certify")
    _publish_done(
        case, warrant, key, {"neighbours unchanged (audit)": before == after} if audit else {}
    )
    return key


def _publish_done(case: CaseRef, warrant: Warrant, key: str, audit: dict[str, Any]) -> None:
    adapter.publish_case_summary(case, {
        "tenant": case.tenant, "state": "destroyed and certified",
        "acknowledged at": warrant.acknowledged_at, "deadline": warrant.deadline,
        "completed at": datetime.now(UTC), "certificate": key,
        "isolation": "no other row referenced the tenant's; every deleted row checked",
        "systems": stages.systems_summary(adapter.settings(), case), **audit,
    }, title="Destruction of case")  # fmt: skip
