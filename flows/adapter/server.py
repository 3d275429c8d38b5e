"""Driving a Prefect server from outside a run: the demo and the tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import (
    ObjectNotFound,
)
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from offboarding.core.errors import (
    OffboardingError,
    ServiceError,
)


@contextlib.contextmanager
def using_server(api_url: str, auth: str | None = None) -> Iterator[None]:
    """Point this process's Prefect client at a server, whatever was imported before (with
    `auth`, 'user:password', where the server asks for its basic authentication)."""
    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    with temporary_settings(updates=updates):
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
