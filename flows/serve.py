"""Serve every deployment from this process (the embedded default's worker), with the
contract-terminated trigger on `offboard`.

Production uses `prefect deploy --all` with prefect.yaml and a process worker instead; both
declare the same deployments.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from flows.adapter import CONTRACT_TERMINATED, set_up_prefect
from flows.backup import backup
from flows.deadline import deadline_watch
from flows.destroy import destroy
from flows.offboard import offboard
from flows.support import legal_hold, postpone_destruction, reissue_link, verify_destruction
from flows.watch import case_watch
from offboarding.core.config import Settings


def contract_terminated_trigger() -> DeploymentEventTrigger:
    """One case per `tenant.contract.terminated` event, its tenant taken from the resource."""
    return DeploymentEventTrigger(
        name="contract-terminated",
        expect={CONTRACT_TERMINATED},
        match={"prefect.resource.id": "tenant.*"},
        parameters={
            "tenant": "{{ event.resource['tenant.id'] }}",
            "reason": "{{ event.payload.get('reason', '') }}",
        },
    )


def deployments(settings: Settings) -> list[RunnerDeployment]:
    made = [
        offboard.to_deployment(
            name="offboard",
            description="Offboard one tenant: freeze, export, deliver, wait for the "
            "acknowledgement (Resume form), schedule destruction. Starts on the "
            "tenant.contract.terminated event, or by hand with this form.",
            triggers=[contract_terminated_trigger()],
        ),
        destroy.to_deployment(name="destroy", description="Destroy a tenant's data; certify."),
        case_watch.to_deployment(
            name="case-watch",
            description="Remind, re-issue expired links, continue cases deemed delivered.",
            interval=settings.case_watch_interval,
        ),
        backup.to_deployment(
            name="backup", description="Back up every active tenant.", cron="0 2 * * *"
        ),
        deadline_watch.to_deployment(
            name="deadline-watch",
            description="Every case against its deadline; fails for an overdue one.",
            cron="0 6 * * *",
        ),
        reissue_link.to_deployment(name="reissue-link", description=reissue_link.description),
        legal_hold.to_deployment(name="legal-hold", description=legal_hold.description),
        postpone_destruction.to_deployment(
            name="postpone-destruction", description=postpone_destruction.description
        ),
        verify_destruction.to_deployment(
            name="verify-destruction", description=verify_destruction.description
        ),
    ]
    return [d for d in made if isinstance(d, RunnerDeployment)]


def main() -> None:
    settings = Settings()
    set_up_prefect(settings)
    serve(*deployments(settings), print_starting_message=False)


if __name__ == "__main__":
    main()
