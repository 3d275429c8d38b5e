"""Destruction of every copy of a tenant's data, verified and certified.

check legal hold -> check isolation (the tenant's rows listed; no other row references
them) -> destroy each location (each deleted row or object checked to be the tenant's) ->
verify each -> certify and archive. With OFFBOARD_NEIGHBOURS_AUDIT, digests of every other
tenant's data are taken before and after as well (quiet platforms only: see its setting).
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import adapter
from offboarding.core.config import validate_tenant_id
from offboarding.core.records import CaseRef
from offboarding.destruction import destruction as stages
from offboarding.locations import Remaining, Removal, destruction_order


@task(name="check-legal-hold", task_run_name="check-legal-hold-{case.tenant}")
def check_legal_hold(case: CaseRef) -> None:
    stages.check_legal_hold(adapter.settings(), case)


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


@flow(name="destroy", flow_run_name="destroy-{tenant}", persist_result=True)
def destroy(tenant: str, case_id: str, acknowledged_at: datetime, deadline: datetime) -> str:
    """Destroy every copy of the tenant's data, prove it, and archive a signed certificate.

    Scheduled by the offboard flow; never start it by hand for a case not acknowledged.

    Args:
        tenant: The tenant's id.
        case_id: The case, e.g. acme-0123456789ab.
        acknowledged_at: When the client acknowledged (or the export was deemed delivered).
        deadline: When destruction must be complete (acknowledgement + 90 days).
    """
    case = CaseRef(tenant=validate_tenant_id(tenant), case_id=case_id)
    audit = adapter.settings().destruction.neighbours_audit
    started_at = datetime.now(UTC)
    order = destruction_order(adapter.settings())
    steps = [f"destroy {n}" for n in order] + [f"verify {n}" for n in order]
    progress = adapter.Progress(["check isolation", *steps, "certify"]).start(case, "destroy")
    check_legal_hold(case)
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
    adapter.publish_table(
        case, "destruction",
        [{"location": n, "method": removals[n].method, "items before": removals[n].items_before,
          "bytes before": removals[n].bytes_before, "removed": removals[n].items_removed,
          "left": remaining[n].items, "lingering until": remaining[n].pending_until or "-",
          "verification": remaining[n].verification} for n in order],
        f"Per-location destruction evidence of case {case.case_id}",
    )  # fmt: skip
    key = certify(
        case,
        stages.DestructionEvidence(
            acknowledged_at=acknowledged_at,
            deadline=deadline,
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
    adapter.publish_case_summary(case, {
        "tenant": tenant, "state": "destroyed and certified", "acknowledged at": acknowledged_at,
        "deadline": deadline, "completed at": datetime.now(UTC), "certificate": key,
        "isolation": "no other row referenced the tenant's; every deleted row checked",
        **({"neighbours unchanged (audit)": before == after} if audit else {}),
    }, title="Destruction of case")  # fmt: skip
    return key
