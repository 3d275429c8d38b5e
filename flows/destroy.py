"""Destruction of every copy of a tenant's data, verified and certified.

check legal hold -> fingerprint neighbours -> destroy each location -> verify each
-> fingerprint neighbours again -> certify and archive
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from offboarding import destruction as stages
from offboarding.config import Settings, validate_tenant_id
from offboarding.locations import DESTRUCTION_ORDER, Remaining, Removal
from offboarding.records import CaseRef


@task(name="check-legal-hold", task_run_name="check-legal-hold-{case.tenant}")
def check_legal_hold(case: CaseRef) -> None:
    stages.check_legal_hold(Settings(), case)


@task(name="fingerprint-neighbours", task_run_name="fingerprint-neighbours-{moment}-{case.tenant}")
def fingerprint_neighbours(case: CaseRef, moment: str) -> dict[str, str]:
    """`moment` ('before'/'after') keeps the two fingerprints apart in the task cache."""
    return stages.neighbours_digests(Settings(), case)


@task(name="destroy", task_run_name="destroy-{location}-{case.tenant}", retries=2,
      retry_delay_seconds=10)  # fmt: skip
def destroy_location(case: CaseRef, location: str) -> Removal:
    return stages.destroy_location(Settings(), case, location)


@task(name="verify", task_run_name="verify-{location}-{case.tenant}", retries=2,
      retry_delay_seconds=10, cache_policy=NO_CACHE)  # fmt: skip
def verify_location(case: CaseRef, location: str) -> Remaining:
    return stages.verify_location(Settings(), case, location)


@task(name="certify", task_run_name="certify-{case.tenant}")
def certify(case: CaseRef, **evidence: Any) -> str:
    archived = stages.certify(Settings(), case, **evidence)
    get_run_logger().info("certificate of destruction archived as %s", archived.key)
    return archived.key


@flow(name="destroy", flow_run_name="destroy-{tenant}", persist_result=True)
def destroy(tenant: str, case_id: str, acknowledged_at: datetime, deadline: datetime) -> str:
    """Destroy every copy of the tenant's data, prove it, and archive a signed certificate."""
    case = CaseRef(tenant=validate_tenant_id(tenant), case_id=case_id)
    started_at = datetime.now(UTC)
    check_legal_hold(case)
    before = fingerprint_neighbours(case, "before")
    removals = {name: destroy_location(case, name) for name in DESTRUCTION_ORDER}
    remaining = {name: verify_location(case, name) for name in DESTRUCTION_ORDER}
    after = fingerprint_neighbours(case, "after")
    return certify(
        case,
        acknowledged_at=acknowledged_at,
        deadline=deadline,
        started_at=started_at,
        removals=removals,
        remaining=remaining,
        neighbours_before=before,
        neighbours_after=after,
    )
