"""Serve every deployment from this process (the embedded default's worker), with the
contract-terminated trigger on `offboard`.

Production uses `prefect deploy --all` with prefect.yaml and a process worker instead; both
come from the one table in flows/deployments.py.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from flows import adapter
from flows.deployments import DEPLOYMENTS, Deployment
from offboarding.core.config import Settings


def _flow(deployment: Deployment) -> Any:
    path, _, name = deployment.entrypoint.partition(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def deployments(settings: Settings) -> list[RunnerDeployment]:
    made = [
        _flow(d).to_deployment(
            name=d.name,
            description=d.description,
            interval=d.interval(settings),
            cron=d.cron,
            triggers=[DeploymentEventTrigger(**trigger) for trigger in d.triggers],
        )
        for d in DEPLOYMENTS
    ]
    return [d for d in made if isinstance(d, RunnerDeployment)]


def main() -> None:
    settings = Settings()
    adapter.set_up_prefect(settings)
    serve(*deployments(settings), print_starting_message=False)


if __name__ == "__main__":
    main()
