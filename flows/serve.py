"""Serve the deployments from this process (the embedded default's worker).

Production uses `prefect deploy` with prefect.yaml and a process worker instead.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

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
    ]
    serve(
        *(d for d in deployments if isinstance(d, RunnerDeployment)),
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()
