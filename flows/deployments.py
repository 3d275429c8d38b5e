"""Every deployment of tenant-offboarding, declared once.

`flows/serve.py` serves them from one process (the embedded default); `prefect.yaml`, which
`prefect deploy --all` reads in production, is generated from this table:

    python -m flows.deployments > prefect.yaml       # after changing a deployment, or
                                                     # OFFBOARD_CASE_WATCH_INTERVAL

and tests/test_deployments.py fails when the two differ.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from offboarding.core.config import Settings

__all__ = [
    "CONTRACT_TERMINATED",
    "CONTRACT_TERMINATED_TRIGGER",
    "DEPLOYMENTS",
    "PERSON_REQUEST",
    "PERSON_REQUEST_TRIGGER",
    "WORK_POOL",
    "Deployment",
    "prefect_yaml",
]

WORK_POOL = "offboarding"
CONTRACT_TERMINATED = "tenant.contract.terminated"
PERSON_REQUEST = "tenant.person.request"

# One case per `tenant.contract.terminated` event, its tenant taken from the resource. The
# `match` is scoped: its default would match every resource of the server.
CONTRACT_TERMINATED_TRIGGER: dict[str, Any] = {
    "name": "contract-terminated",
    "match": {"prefect.resource.id": "tenant.*"},
    "expect": [CONTRACT_TERMINATED],
    "parameters": {
        "tenant": "{{ event.resource['tenant.id'] }}",
        "reason_ref": "{{ event.payload.get('reason_ref', '') }}",
    },
}


# The client's request about one person, from its administration console: the tenant from the
# resource, the person's key and the kind from the payload (references only).
PERSON_REQUEST_TRIGGER: dict[str, Any] = {
    "name": "person-request",
    "match": {"prefect.resource.id": "tenant.*"},
    "expect": [PERSON_REQUEST],
    "parameters": {
        "tenant": "{{ event.resource['tenant.id'] }}",
        "kind": "{{ event.payload.get('kind', '') }}",
        "person": "{{ event.payload.get('person', '') }}",
    },
}


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # path:function, from the project's root
    description: str
    cron: str | None = None
    every: str | None = None  # the setting holding the interval, as section.field
    triggers: tuple[dict[str, Any], ...] = ()

    def interval(self, settings: Settings) -> timedelta | None:
        if self.every is None:
            return None
        section, _, name = self.every.partition(".")
        interval: timedelta = getattr(getattr(settings, section), name)
        return interval


DEPLOYMENTS: tuple[Deployment, ...] = (
    Deployment(
        "offboard",
        "flows/offboard.py:offboard",
        "Offboard one tenant: freeze, inventory, export, package, verify, deliver links to the "
        "client's contact, wait for the acknowledgement (the Resume form), then schedule "
        "destruction. Starts on the tenant.contract.terminated event, or by hand with this form.",
        triggers=(CONTRACT_TERMINATED_TRIGGER,),
    ),
    Deployment(
        "destroy",
        "flows/destroy.py:destroy",
        "Destroy every copy of a case's data, proving no other tenant's row is touched; "
        "verify each location and archive a signed certificate. Scheduled by the offboard "
        "flow at acknowledgement. Takes the case id alone and refuses, touching nothing, "
        "unless the case's signed trail shows it delivered, acknowledged, planned for now "
        "and not on hold.",
    ),
    Deployment(
        "case-watch",
        "flows/watch.py:case_watch",
        "Look after cases waiting for acknowledgement: send due reminders, re-issue expired "
        "links, and continue cases past the acknowledgement period as deemed delivered.",
        every="delivery.case_watch_interval",
    ),
    Deployment(
        "backup",
        "flows/backup.py:backup",
        "Back up every active tenant (or the tenants given): one snapshot each, encrypted with "
        "the tenant's own data key, written to every backup location.",
        cron="0 2 * * *",
    ),
    Deployment(
        "deadline-watch",
        "flows/deadline.py:deadline_watch",
        "List every case with its destruction deadline, flag those within the warning period, "
        "and fail for any case past its deadline and not destroyed.",
        cron="0 6 * * *",
    ),
    Deployment(
        "reissue-link",
        "flows/support.py:reissue_link",
        "Send the client's contact new download links for a case.",
    ),
    Deployment(
        "legal-hold",
        "flows/support.py:legal_hold",
        "Place a legal hold on a tenant (scheduled destruction is cancelled), or ask to lift "
        "it: a second person approves with the approve form (or the staff page), then "
        "destruction is scheduled again for its original date, within its deadline.",
    ),
    Deployment(
        "approve",
        "flows/support.py:approve_request",
        "A second person approves a request that shortens or lifts a protection (destruction "
        "earlier than the grace, lifting a legal hold, postponing to the limit); it is then "
        "carried out. Who asked cannot approve. Statements: the staff page, /staff/ on the "
        "link endpoint.",
    ),
    Deployment(
        "postpone-destruction",
        "flows/support.py:postpone_destruction",
        "Move a case's scheduled destruction later, never past the 90-day limit.",
    ),
    Deployment(
        "person-request",
        "flows/persons.py:person_request",
        "A request about one person of a tenant (clause 2.2.7): access or portability answered "
        "with the person's bundle, erasure with a signed certificate; a request sent to us "
        "directly is forwarded to the client's contact, not carried out. Starts on the "
        "tenant.person.request event, or by hand with this form.",
        triggers=(PERSON_REQUEST_TRIGGER,),
    ),
    Deployment(
        "retention",
        "flows/persons.py:retention",
        "Run the retention rules the clients set: delete each tenant's rows past their period "
        "(and the files they name), with a signed record per tenant and run.",
        cron="0 3 * * *",
    ),
    Deployment(
        "retention-rule",
        "flows/persons.py:retention_rule",
        "Set a retention rule a client asked for (table, dating column, period), or retire one; "
        "refused when it could touch another tenant's rows.",
    ),
    Deployment(
        "forget-contacts",
        "flows/persons.py:forget_contacts_due",
        "Remove former clients' contacts three years after their contract ended: statements, "
        "pseudonym keys, requests, notices, the registry's contact columns; ask the roles of "
        "the operator's other systems; record it, signed.",
        cron="30 6 * * *",
    ),
    Deployment(
        "compact",
        "flows/compact.py:compact",
        "Rewrite the tables the tenants destroyed since the last run had rows in, each once, "
        "so their deleted bytes leave the files; prove it with each case's canaries and sign "
        "an addendum to its certificate. Every OFFBOARD_COMPACTION_INTERVAL (a week), or by "
        "hand.",
        every="destruction.compaction_interval",
    ),
    Deployment(
        "verify-destruction",
        "flows/support.py:verify_destruction",
        "Re-scan every location of a destroyed case and record the result.",
    ),
)

_HEADER = """\
# GENERATED from flows/deployments.py by `python -m flows.deployments > prefect.yaml`:
# change that table, not this file (tests/test_deployments.py fails when they differ).
#
# Every deployment of tenant-offboarding, for a Prefect server with a process work pool.
#
#   offboard setup-prefect          # work pool "offboarding" + global concurrency limits
#   prefect --no-prompt deploy --all
#   prefect worker start --pool offboarding
#
# Workers read their settings from OFFBOARD_* environment variables (README, docs/operators.md).
# The embedded default (`make demo`) serves the same deployments from flows/serve.py instead.
# The worker runs flows from this checkout. A worker on another machine: replace the pull step
# with a git_clone step (prefect.deployments.steps.git_clone) of the release it should run.
"""


def prefect_yaml(settings: Settings) -> str:
    """prefect.yaml for `prefect deploy --all`, from DEPLOYMENTS."""
    deployments = []
    for d in DEPLOYMENTS:
        entry: dict[str, Any] = {
            "name": d.name,
            "entrypoint": d.entrypoint,
            "description": d.description,
            "work_pool": {"name": WORK_POOL, "job_variables": {}},
        }
        interval = d.interval(settings)
        if interval is not None:
            entry["schedules"] = [{"interval": int(interval.total_seconds())}]
        if d.cron:
            entry["schedules"] = [{"cron": d.cron}]
        if d.triggers:
            entry["triggers"] = [{"type": "event", "enabled": True, **t} for t in d.triggers]
        deployments.append(entry)
    document = {
        "name": "tenant-offboarding",
        "prefect-version": "3.9.1",
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}],
        "deployments": deployments,
    }
    body = yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
    return _HEADER + body


if __name__ == "__main__":
    sys.stdout.write(prefect_yaml(Settings()))
