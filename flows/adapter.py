"""The one place that calls Prefect's API beyond the @flow and @task decorators.

    PrefectRuns                    the library's `Runs` (offboarding/runs.py): destruction runs,
                                   their states, cancelling, waiting cases, resuming them
    Acknowledgement, await_acknowledgement
                                   the Resume form of a waiting case, and the suspend that
                                   frees the worker until it is filled in
    set_up_prefect, emit_contract_terminated, exclusive
                                   work pool and global concurrency limits, the platform's
                                   event, and taking a slot of a limit
    Progress, publish_case_summary, publish_table, link_to_certificate
                                   the artifacts support staff read in the UI
    settings, logger               the library's settings with Prefect's facts filled in, and
                                   the run's logger (a plain one outside a run)
    using_server, deployments_registered, start_deployment, wait_for_run
                                   driving a server from outside a run (the demo, the tests)

The library (`offboarding`) never imports Prefect; the import contracts in pyproject.toml fail
the lint step if it does. Artifacts carry ids, counts, sizes, dates and digests only: table
names are schema, not data; file names and addresses never appear (principle 1).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Task, get_client, get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE
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
from prefect.futures import as_completed
from prefect.input import RunInput, read_flow_run_input
from prefect.input.run_input import keyset_from_paused_state
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.states import Cancelled

from flows.deployments import CONTRACT_TERMINATED, PERSON_REQUEST, WORK_POOL
from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import (
    AcknowledgementRejected,
    ConfigurationError,
    NotWaitingError,
    OffboardingError,
    ServiceError,
)
from offboarding.core.records import CaseRef, ExportedPart, case_from_id
from offboarding.destruction.attestation import AttestationDue
from offboarding.export.export import FanOut
from offboarding.locations.base import ExportProgress, PartTask
from offboarding.runs import AcknowledgementInput, AttestationInput

__all__ = [
    "CONTRACT_TERMINATED",
    "DESTROY_DEPLOYMENT",
    "DESTRUCTION_LIMIT_NAME",
    "EXPORT_LIMIT_NAME",
    "PERSON_REQUEST",
    "WORK_POOL",
    "Acknowledgement",
    "Attestation",
    "PartsProgress",
    "PrefectRuns",
    "Progress",
    "await_acknowledgement",
    "await_attestation",
    "cancelled",
    "contract_terminated_event",
    "current_run_id",
    "deployments_registered",
    "emit_contract_terminated",
    "emit_person_request",
    "exclusive",
    "link_to_certificate",
    "logger",
    "person_request_event",
    "publish_case_summary",
    "publish_table",
    "resume_attestation",
    "set_up_prefect",
    "settings",
    "start_deployment",
    "using_server",
    "wait_for_run",
    "waiting_attestation",
]

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
    """Emit the event through Prefect's API (waits until it is sent); return its id."""
    validate_tenant_id(tenant)
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


def _artifact_key(*parts: str) -> str:
    """Artifact keys: lowercase letters, digits and dashes only."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text)


def publish_case_summary(case: CaseRef, facts: dict[str, Any], title: str = "Case") -> None:
    lines = [f"# {title} {case.case_id}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_text(value)} |" for name, value in facts.items()]
    create_markdown_artifact(
        "\n".join(lines),
        key=_artifact_key("case", case.case_id),
        description=f"{title} {case.case_id}: ids, counts and dates only",
    )


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    return str(value).replace("|", "/")


def publish_table(case: CaseRef, name: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(
        [{k: _text(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows],
        key=_artifact_key(name, case.case_id),
        description=description,
    )


@dataclass
class Progress:
    """A progress artifact for one run, moved through named steps."""

    steps: Sequence[str]
    artifact: UUID | None = None

    def start(self, case: CaseRef, what: str) -> Progress:
        artifact = create_progress_artifact(
            0.0, key=_artifact_key("progress", what, case.case_id), description=f"{what} progress"
        )
        assert isinstance(artifact, UUID)  # called from sync flows only
        self.artifact = artifact
        return self

    def done(self, step: str) -> None:
        if self.artifact is not None:
            position = list(self.steps).index(step) + 1
            update_progress_artifact(
                self.artifact,
                100.0 * position / len(self.steps),
                description=f"{step} done ({position} of {len(self.steps)})",
            )


# Part tasks are cheap to redo and hold nothing worth caching: no cache, no persisted result.
NO_CACHE = NONE


def fan_out_on_cluster(address: str, part_task: Task[..., ExportedPart], case: CaseRef) -> FanOut:
    """Run a location's part tasks on the Dask cluster at `address` through Prefect's Dask
    task runner: each is a task run of its own in the UI, retried by Prefect when it fails,
    and rescheduled by Dask on another worker when its worker process dies. Parts come back
    in the order of the tasks; `progress` hears of each as it finishes."""

    def run(tasks: list[PartTask], progress: ExportProgress | None) -> list[ExportedPart]:
        from prefect_dask.task_runners import DaskTaskRunner

        if not tasks:
            return []
        done: dict[int, ExportedPart] = {}
        rows = 0
        if progress is not None:
            progress(0, len(tasks), 0)
        with DaskTaskRunner(address=address) as runner:
            futures = {
                runner.submit(part_task, parameters={"case": case, "part": task}): index
                for index, task in enumerate(tasks)
            }
            for future in as_completed(list(futures)):
                part = future.result()
                done[futures[future]] = part
                rows += part.rows or 0
                if progress is not None:
                    progress(len(done), len(tasks), rows)
        return [done[index] for index in range(len(tasks))]

    return run


class PartsProgress:
    """A progress artifact of the export's parts, updated as workers finish them (every 2% at
    most). A failed update is logged, never fatal: the UI is not worth an export."""

    def __init__(self, case: CaseRef) -> None:
        self.case = case
        self.artifact: UUID | None = None
        self.shown = -1.0

    def __call__(self, done: int, total: int, rows: int) -> None:
        percent = 100.0 * done / total if total else 100.0
        if self.artifact is not None and percent < 100.0 and percent - self.shown < 2.0:
            return
        description = f"{done} of {total} table parts exported, {rows:,} rows"
        try:
            if self.artifact is None:
                artifact = create_progress_artifact(
                    percent,
                    key=_artifact_key("progress", "export", self.case.case_id),
                    description=description,
                )
                assert isinstance(artifact, UUID)
                self.artifact = artifact
            else:
                update_progress_artifact(self.artifact, percent, description=description)
            self.shown = percent
        except Exception as error:
            logger().warning("export progress not shown: %s", error)


def link_to_certificate(case: CaseRef, url: str) -> None:
    create_link_artifact(
        url,
        link_text=f"Certificate of destruction {case.case_id}",
        key=_artifact_key("certificate", case.case_id),
        description="The signed certificate in the write-once archive",
    )


# Driving a server from outside a run: the demo, `offboard serve-local`'s checks and the tests.


@contextlib.contextmanager
def using_server(api_url: str) -> Iterator[None]:
    """Point this process's Prefect client at a server, whatever was imported before."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def deployments_registered(names: Sequence[str]) -> bool:
    """True once every named deployment ("flow/deployment") exists on the server."""
    with get_client(sync_client=True) as client:
        try:
            for name in names:
                client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def start_deployment(name: str, parameters: dict[str, Any] | None = None) -> FlowRun:
    """Create a run of a deployment now and return it without waiting."""
    run = run_deployment(name, parameters=parameters or {}, timeout=0, as_subflow=False)
    assert isinstance(run, FlowRun)
    return run


def wait_for_run(
    run_id: UUID | str,
    wanted: set[str],
    timeout: float,
    describe_failure: Callable[[], str] = lambda: "",
) -> FlowRun:
    """Poll a flow run until its state type is one of `wanted`; fail on any other final state,
    or after `timeout` seconds (the message ends with `describe_failure()`)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(UUID(str(run_id)))
            state = run.state
            if state is not None and state.type.value in wanted:
                return run
            if state is not None and state.is_final():
                raise OffboardingError(
                    f"flow run {run.name} ended {state.name}: {state.message or ''}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"flow run {run.name} still {state.name if state else '?'} after {timeout:.0f}s"
                    f"\n{describe_failure()}"
                )
            time.sleep(0.5)
