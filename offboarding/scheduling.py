"""The case's life in Prefect: its waiting run, its destruction run, and legal holds.

    schedule_destruction   one destruction run per case (Prefect idempotency key), recorded
    place_hold             legal hold in the registry; the scheduled destruction is cancelled
    release_hold           lift the hold; destruction is scheduled again, for the original
                           deadline, or refused when the deadline has passed
    waiting_runs           the offboard runs suspended for an acknowledgement

The destroy flow re-checks the hold when it starts, so a hold placed while a run is already
being started still stops it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from offboarding.audit import AuditTrail
from offboarding.config import Settings, validate_tenant_id
from offboarding.errors import DeadlineError, TenantError
from offboarding.records import CaseRef, DestructionSchedule
from offboarding.registry import TenantRegistry
from offboarding.signing import Signer
from offboarding.store import open_store

__all__ = [
    "DESTROY_DEPLOYMENT",
    "HoldResult",
    "cancel_if_scheduled",
    "case_from_id",
    "cases_of",
    "current_schedule",
    "place_hold",
    "release_hold",
    "schedule_destruction_run",
    "waiting_runs",
]

DESTROY_DEPLOYMENT = "destroy/destroy"
OFFBOARD_FLOW = "offboard"
_CANCELLABLE = {"SCHEDULED", "PENDING"}


def _trail(settings: Settings, case: CaseRef) -> AuditTrail:
    return AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))


def case_from_id(case_id: str) -> CaseRef:
    """A case id is `<tenant>-<12 hex digits of the offboard run>`."""
    tenant, _, suffix = case_id.rpartition("-")
    if len(suffix) != 12 or any(c not in "0123456789abcdef" for c in suffix):
        raise TenantError(
            f"{case_id!r} is not a case id: it looks like 'acme-0123456789ab' (the tenant, a "
            "dash, and 12 hex digits), as in the client's notice and the case's audit trail"
        )
    return CaseRef(tenant=validate_tenant_id(tenant), case_id=case_id)


def cases_of(settings: Settings, tenant: str) -> list[CaseRef]:
    """Every case of a tenant that has an audit trail, oldest first by id."""
    archive = open_store(settings.store_url("archive"))
    prefix = f"cases/{validate_tenant_id(tenant)}/"
    ids = sorted({o.key[len(prefix) :].split("/", 1)[0] for o in archive.list_objects(prefix)})
    return [CaseRef(tenant=tenant, case_id=case_id) for case_id in ids]


def schedule_destruction_run(
    case: CaseRef,
    *,
    acknowledged_at: datetime,
    scheduled_for: datetime,
    deadline: datetime,
    idempotency_key: str,
) -> str:
    """Create (or find, by key) the case's destruction run; return its id."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(
        DESTROY_DEPLOYMENT,
        parameters={
            "tenant": case.tenant,
            "case_id": case.case_id,
            "acknowledged_at": acknowledged_at.isoformat(),
            "deadline": deadline.isoformat(),
        },
        scheduled_time=scheduled_for,
        flow_run_name=f"destroy-{case.tenant}",
        timeout=0,
        as_subflow=False,
        idempotency_key=idempotency_key,
    )
    assert isinstance(run, FlowRun)
    return str(run.id)


def current_schedule(settings: Settings, case: CaseRef) -> DestructionSchedule | None:
    """The latest destruction scheduled for the case, from its trail."""
    kinds = {"destruction-scheduled", "destruction-rescheduled"}
    events = [e.document for e in _trail(settings, case).events() if e.document["kind"] in kinds]
    if not events:
        return None
    latest = max(events, key=lambda e: e["seq"])["data"]
    return DestructionSchedule(
        acknowledged_at=datetime.fromisoformat(latest["acknowledged_at"]),
        scheduled_for=datetime.fromisoformat(latest["scheduled_for"]),
        deadline=datetime.fromisoformat(latest["deadline"]),
        flow_run_id=latest["flow_run_id"],
    )


def _held_plan(settings: Settings, case: CaseRef) -> DestructionSchedule | None:
    """The destruction a hold kept from being scheduled at acknowledgement, if any."""
    held = _trail(settings, case).find("destruction-held")
    if not held:
        return None
    data = held[-1]["data"]
    return DestructionSchedule(
        acknowledged_at=datetime.fromisoformat(data["acknowledged_at"]),
        scheduled_for=datetime.fromisoformat(data["scheduled_for"]),
        deadline=datetime.fromisoformat(data["deadline"]),
        flow_run_id=None,
    )


def _run_state(flow_run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    return run.state.type.value if run.state else "UNKNOWN"


def _cancel(flow_run_id: str, message: str) -> None:
    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Cancelled(message=message), force=True)


def cancel_if_scheduled(flow_run_id: str, message: str) -> bool:
    """Cancel a destruction run that has not started; False if it already has."""
    if _run_state(flow_run_id) not in _CANCELLABLE:
        return False
    _cancel(flow_run_id, message)
    return True


@dataclass(frozen=True)
class HoldResult:
    tenant: str
    cancelled_runs: list[str]
    rescheduled: list[DestructionSchedule]
    notes: list[str]


def place_hold(settings: Settings, tenant: str, reason: str, by: str) -> HoldResult:
    """Put the tenant on legal hold and cancel every destruction not yet started."""
    if not reason.strip():
        raise TenantError("a legal hold needs a reason (e.g. the court order's reference)")
    registry = TenantRegistry(settings)
    registry.set_hold(tenant, True, reason)
    cancelled: list[str] = []
    notes: list[str] = []
    for case in cases_of(settings, tenant):
        schedule = current_schedule(settings, case)
        run_id = schedule.flow_run_id if schedule else None
        state = _run_state(run_id) if run_id else None
        cancelled_here: list[str] = []
        if run_id and state in _CANCELLABLE:
            _cancel(run_id, "legal hold")
            cancelled_here.append(run_id)
        elif state == "RUNNING":
            notes.append(
                f"case {case.case_id}: destruction is already running; it re-checks the hold "
                "only when it starts, so check its outcome in the Prefect UI"
            )
        cancelled += cancelled_here
        # The reason and the person may name people: the locked archive keeps digests.
        _trail(settings, case).record(
            "legal-hold-placed",
            {"reason_sha256": hashlib.sha256(reason.encode()).hexdigest(),
             "by_sha256": hashlib.sha256(by.encode()).hexdigest(),
             "destruction_runs_cancelled": cancelled_here},
        )  # fmt: skip
    return HoldResult(tenant, cancelled, [], notes)


def release_hold(settings: Settings, tenant: str, by: str, *, now: bool = False) -> HoldResult:
    """Lift the hold and schedule each held case's destruction again, within its deadline.

    A deadline that passed while the hold was on is refused (the hold stays) unless `now`:
    then destruction starts at once and the certificate shows the deadline was missed."""
    registry = TenantRegistry(settings)
    record = registry.get(tenant)
    if not record.legal_hold:
        raise TenantError(f"tenant {tenant!r} is not on legal hold: nothing to release")
    at = datetime.now(UTC)
    plans: list[tuple[CaseRef, DestructionSchedule]] = []
    for case in cases_of(settings, tenant):
        schedule = current_schedule(settings, case)
        if schedule is None:
            schedule = _held_plan(settings, case)  # acknowledged while held: never scheduled
        elif _run_state(str(schedule.flow_run_id)) not in {"CANCELLED", "FAILED"}:
            continue  # still scheduled, running, or done
        if schedule is None:
            continue  # still waiting for its acknowledgement
        if schedule.deadline <= at and not now:
            raise DeadlineError(
                f"case {case.case_id}: its destruction deadline {schedule.deadline:%Y-%m-%d %H:%M} "
                "UTC (acknowledgement + 90 days, clause 2.3.2) passed while the hold was on. The "
                "hold stays. If the hold's authority allows destruction now, run `offboard release "
                f"{tenant} --now`: it destroys at once and the certificate records the late date; "
                "tell the client's DPO"
            )
        plans.append((case, schedule))
    registry.set_hold(tenant, False)
    rescheduled: list[DestructionSchedule] = []
    for case, schedule in plans:
        trail = _trail(settings, case)
        releases = len(trail.find("destruction-rescheduled"))
        scheduled_for = at if now else max(schedule.scheduled_for, at)
        run_id = schedule_destruction_run(
            case,
            acknowledged_at=schedule.acknowledged_at,
            scheduled_for=scheduled_for,
            deadline=schedule.deadline,
            idempotency_key=f"destroy-{case.case_id}-release-{releases + 1}",
        )
        trail.record(
            "destruction-rescheduled",
            {"flow_run_id": run_id, "scheduled_for": scheduled_for.isoformat(),
             "deadline": schedule.deadline.isoformat(),
             "acknowledged_at": schedule.acknowledged_at.isoformat(),
             "by_sha256": hashlib.sha256(by.encode()).hexdigest(),
             "after_deadline": now and schedule.deadline <= at},
        )  # fmt: skip
        rescheduled.append(
            DestructionSchedule(
                acknowledged_at=schedule.acknowledged_at,
                scheduled_for=scheduled_for,
                deadline=schedule.deadline,
                flow_run_id=run_id,
            )
        )
    for case in cases_of(settings, tenant):
        _trail(settings, case).record(
            "legal-hold-lifted", {"by_sha256": hashlib.sha256(by.encode()).hexdigest()}
        )
    return HoldResult(tenant, [], rescheduled, [])


def waiting_runs() -> list[tuple[str, str]]:
    """(flow run id, tenant) of every offboard run suspended for an acknowledgement."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    found: list[tuple[str, str]] = []
    offset = 0
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[OFFBOARD_FLOW])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
                limit=200,
                offset=offset,
            )
            found += [(str(r.id), str(r.parameters.get("tenant", ""))) for r in runs]
            if len(runs) < 200:
                return found
            offset += 200
