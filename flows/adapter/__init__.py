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

from flows.adapter.artifacts import (
    NO_CACHE,
    PartsProgress,
    Progress,
    fan_out_on_cluster,
    link_to_certificate,
    publish_case_summary,
    publish_table,
    write_parts_on_cluster,
)
from flows.adapter.runs import (
    DESTROY_DEPLOYMENT,
    DESTRUCTION_LIMIT_NAME,
    EXPORT_LIMIT_NAME,
    Acknowledgement,
    Attestation,
    PrefectRuns,
    await_acknowledgement,
    await_attestation,
    cancelled,
    contract_terminated_event,
    current_run_id,
    emit_contract_terminated,
    emit_person_request,
    exclusive,
    logger,
    person_request_event,
    resume_attestation,
    set_up_prefect,
    settings,
    waiting_attestation,
)
from flows.adapter.server import (
    deployments_registered,
    start_deployment,
    using_server,
    wait_for_run,
)
from flows.deployments import CONTRACT_TERMINATED, PERSON_REQUEST, WORK_POOL

__all__ = [
    "CONTRACT_TERMINATED",
    "DESTROY_DEPLOYMENT",
    "DESTRUCTION_LIMIT_NAME",
    "EXPORT_LIMIT_NAME",
    "NO_CACHE",
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
    "fan_out_on_cluster",
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
    "write_parts_on_cluster",
]
