"""Serve the deployments from this process (the embedded default's worker).

Production uses `prefect deploy` with prefect.yaml and a process worker instead.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.backup import backup
from flows.deadline import deadline_watch
from flows.destroy import destroy
from flows.offboard import offboard
from flows.watch import case_watch
from offboarding.config import Settings


def main() -> None:
    deployments = [
        offboard.to_deployment(name="offboard", description="Offboard one tenant."),
        destroy.to_deployment(name="destroy", description="Destroy a tenant's data; certify."),
        case_watch.to_deployment(
            name="case-watch",
            description="Remind, re-issue expired links, continue cases deemed delivered.",
            interval=Settings().case_watch_interval,
        ),
        backup.to_deployment(
            name="backup", description="Back up every active tenant.", cron="0 2 * * *"
        ),
        deadline_watch.to_deployment(
            name="deadline-watch",
            description="Every case against its deadline; fails for an overdue one.",
            cron="0 6 * * *",
        ),
    ]
    serve(
        *(d for d in deployments if isinstance(d, RunnerDeployment)),
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()
