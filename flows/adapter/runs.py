"""Prefect's runs as the library's `Runs`, the forms a waiting run is resumed with, the
library's settings and logger inside a run, limits and the platform's events."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client, get_run_logger
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.concurrency.sync import concurrency
from prefect.deployments import run_deployment
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.exceptions import (
    MissingContextError,
    ObjectAlreadyExists,
    ObjectNotFound,
    PrefectException,
)
from prefect.flow_runs import resume_flow_run, suspend_flow_run
from prefect.input import RunInput, read_flow_run_input
from prefect.input.run_input import keyset_from_paused_state
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.states import Cancelled

from flows.deployments import CONTRACT_TERMINATED, PERSON_REQUEST, WORK_POOL
from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import (
    AcknowledgementRejected,
    ConfigurationError,
    NotWaitingError,
)
from offboarding.core.records import CaseRef, case_from_id
from offboarding.destruction.attestation import AttestationDue
from offboarding.runs import STATEMENT_PATTERN, AcknowledgementInput, AttestationInput

EXPORT_LIMIT_NAME = "offboarding-exports"
DESTRUCTION_LIMIT_NAME = "offboarding-destructions"
DESTROY_DEPLOYMENT = "destroy/destroy"
OFFBOARD_FLOW = "offboard"
DESTROY_FLOW = "destroy"


def settings() -> Settings:
    """The library's settings, with where Prefect keeps task results (the `orchestrator`
    location scans it) taken from Prefect's own settings unless set."""
    loaded = Settings()
    if loaded.orchestrator_results_path is None:
        path = Path(get_current_settings().results.local_storage_path).expanduser()
        loaded = loaded.model_copy(update={"orchestrator_results_path": path})
    return loaded


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (tests, scripts, the CLI)
        return logging.getLogger("offboarding")


class Acknowledgement(AcknowledgementInput, RunInput):
    """The Resume form of a waiting case: the library's fields, as Prefect's run input. (The
    class name is the key Prefect stores the input under: keep it.)"""


def await_acknowledgement(case: CaseRef) -> AcknowledgementInput:
    """Suspend (the worker is freed) until the client's acknowledgement resumes the run."""
    logger().info("case %s is waiting for the client's acknowledgement", case.case_id)
    return suspend_flow_run(wait_for_input=Acknowledgement, key="acknowledgement", timeout=None)


class Attestation(AttestationInput, RunInput):
    """The Resume form of a destroy run waiting for an attested system's confirmation."""


def attestation_key(system: str) -> str:
    return f"attestation-{system}"


def await_attestation(case: CaseRef, due: AttestationDue) -> AttestationInput:
    """Suspend (the worker is freed) until the role confirms the system's destruction."""
    logger().info(
        "case %s is waiting for the attestation of %s by %s, due %s",
        case.case_id, due.system, due.role, f"{due.due:%Y-%m-%d}",
    )  # fmt: skip
    form = Attestation.with_initial_data(
        description=f"**{due.system}** ({due.description}) of tenant `{case.tenant}`: as "
        f"*{due.role}*, {due.procedure}. Then confirm below, by {due.due:%Y-%m-%d %H:%M} UTC: "
        "who did it, what was done, and where the evidence is kept.",
    )
    return suspend_flow_run(wait_for_input=form, key=attestation_key(due.system), timeout=None)


def waiting_attestation(run_id: str) -> tuple[str, str] | None:
    """(system, case id) a destroy run is suspended for, if it waits for an attestation."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    details = run.state.state_details if run.state else None
    if run.state is None or not run.state.is_paused() or details is None:
        return None
    key = details.pause_key or ""
    if not key.startswith("attestation-"):
        return None
    return key.removeprefix("attestation-"), str(run.parameters.get("case_id", ""))


def resume_attestation(run_id: str, system: str, given: AttestationInput) -> None:
    """Give a waiting destroy run its attestation (what the Resume form sends)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        details = run.state.state_details if run.state else None
        if (
            run.state is None
            or not run.state.is_paused()
            or details is None
            or (details.pause_key != attestation_key(system))
        ):
            raise NotWaitingError(
                f"destroy run {run_id} is not waiting for the attestation of {system!r}"
            )
    resume_flow_run(UUID(run_id), run_input=given.as_run_input())


def _paused(flow_name: str) -> Iterator[FlowRun]:
    """Every paused (suspended) run of a flow, page by page."""
    offset = 0
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
                limit=200,
                offset=offset,
            )
            yield from runs
            if len(runs) < 200:
                return
            offset += 200


def _form_fields(run_id: str) -> set[str]:
    """The fields of the form a suspended run waits for (the schema stored when it paused)."""
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(run_id))
        except ObjectNotFound:
            return set()
    if run.state is None or not run.state.is_paused():
        return set()
    try:
        schema = read_flow_run_input(
            keyset_from_paused_state(run.state)["schema"], flow_run_id=UUID(run_id)
        )
    except PrefectException:
        return set()
    return set(schema.get("properties", {})) if isinstance(schema, dict) else set()


class PrefectRuns:
    """The library's `Runs`, on the Prefect server PREFECT_API_URL names."""

    def schedule_destruction(
        self, case: CaseRef, *, scheduled_for: datetime, idempotency_key: str
    ) -> str:
        run = run_deployment(
            DESTROY_DEPLOYMENT,
            parameters={"case_id": case.case_id},
            scheduled_time=scheduled_for,
            flow_run_name=f"destroy-{case.case_id}",
            timeout=0,
            as_subflow=False,
            idempotency_key=idempotency_key,
        )
        assert isinstance(run, FlowRun)
        return str(run.id)

    def state(self, run_id: str) -> str:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
        return run.state.type.value if run.state else "UNKNOWN"

    def cancel(self, run_id: str, message: str) -> None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(run_id), Cancelled(message=message), force=True)

    def waiting_cases(self) -> list[tuple[str, str]]:
        return [(str(r.id), str(r.parameters.get("tenant", ""))) for r in _paused(OFFBOARD_FLOW)]

    def waiting_destructions(self) -> list[CaseRef]:
        """Cases whose destroy run is suspended, waiting for an attested system."""
        found: list[CaseRef] = []
        for run in _paused(DESTROY_FLOW):
            case_id = run.parameters.get("case_id")
            if case_id:
                found.append(case_from_id(str(case_id)))
        return found

    def resume(self, run_id: str, acknowledgement: AcknowledgementInput) -> None:
        legacy = "acknowledged_by" in _form_fields(run_id)  # suspended by release 0.1
        try:
            resume_flow_run(
                UUID(run_id), run_input=acknowledgement.as_run_input(legacy_form=legacy)
            )
        except RuntimeError as refused:  # the server validates the input against the form
            raise AcknowledgementRejected(
                f"the acknowledgement was not accepted: {refused}; check the fields and retry"
            ) from None
        except PrefectException as error:
            raise NotWaitingError(
                f"flow run {run_id} is not waiting for an acknowledgement ({error}); see its "
                "state in the Prefect UI"
            ) from None


def set_up_prefect(settings: Settings) -> None:
    """Create (or update) the process work pool and the two global concurrency limits."""
    with get_client(sync_client=True) as client:
        for name, limit in (
            (EXPORT_LIMIT_NAME, settings.export.concurrency),
            (DESTRUCTION_LIMIT_NAME, settings.destruction.concurrency),
        ):
            client.upsert_global_concurrency_limit_by_name(name, limit)
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))


def current_run_id() -> str:
    """The id of the flow run this code runs in."""
    return str(flow_run.id)


def cancelled(message: str) -> State:
    """A Cancelled final state for a flow to return (e.g. a duplicate case)."""
    return Cancelled(message=message)


@contextlib.contextmanager
def exclusive(limit_name: str) -> Iterator[None]:
    """Hold one slot of a global concurrency limit for the block."""
    with concurrency(limit_name, occupy=1):
        yield


def contract_terminated_event(tenant: str, reason_ref: str = "") -> dict[str, Any]:
    """The event a platform emits when a contract ends (its documented payload): the reason
    only as a statement reference, since Prefect keeps every event."""
    return {
        "event": CONTRACT_TERMINATED,
        "resource": {"prefect.resource.id": f"tenant.{tenant}", "tenant.id": tenant},
        "payload": {"reason_ref": reason_ref},
    }


def emit_contract_terminated(tenant: str, reason_ref: str = "") -> UUID:
    """Emit the event through Prefect's API (waits until it is sent); return its id. The
    reason only as a statement reference: anything else is refused here, since the trigger's
    run would refuse it on the server, where only the server's log says so."""
    validate_tenant_id(tenant)
    if reason_ref and not re.fullmatch(STATEMENT_PATTERN, reason_ref):
        raise ConfigurationError(
            f"contract-terminated event for tenant {tenant!r} not sent: its reason must be a "
            f"statement reference (st-...), not {len(reason_ref)} characters of text: keep the "
            "statement first (offboarding.people.keep_statement, "
            "or `offboard terminate --reason`, which keeps it), or send no reason"
        )
    event = emit_event(**contract_terminated_event(tenant, reason_ref))
    EventsWorker.drain_all()
    if event is None:
        raise ConfigurationError(
            "the event could not be sent: set PREFECT_API_URL to the Prefect server's API"
        )
    return event.id


def person_request_event(tenant: str, person: str, kind: str) -> dict[str, Any]:
    """The event a client's administration console emits for a request about one person: the
    person by their key only (Prefect keeps every event)."""
    return {
        "event": PERSON_REQUEST,
        "resource": {"prefect.resource.id": f"tenant.{tenant}", "tenant.id": tenant},
        "payload": {"person": person, "kind": kind},
    }


def emit_person_request(tenant: str, person: str, kind: str) -> UUID:
    """Emit the person-request event through Prefect's API; return its id."""
    validate_tenant_id(tenant)
    event = emit_event(**person_request_event(tenant, person, kind))
    EventsWorker.drain_all()
    if event is None:
        raise ConfigurationError(
            "the event could not be sent: set PREFECT_API_URL to the Prefect server's API"
        )
    return event.id
