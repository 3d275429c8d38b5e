"""The deployments are declared once (flows/deployments.py): prefect.yaml is generated from the
table and the served deployments are built from it, so the two cannot drift."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect import Flow

from flows.deployments import DEPLOYMENTS, prefect_yaml
from flows.serve import deployments
from offboarding.core.config import DeliverySettings, Settings

ROOT = Path(__file__).resolve().parent.parent


def _defaults() -> Settings:
    default = DeliverySettings.model_fields["case_watch_interval"].default
    return Settings(case_watch_interval=default)


def test_prefect_yaml_is_generated_from_the_table() -> None:
    assert (ROOT / "prefect.yaml").read_text() == prefect_yaml(_defaults()), (
        "prefect.yaml differs from flows/deployments.py: run "
        "`.venv/bin/python -m flows.deployments > prefect.yaml`"
    )


def test_served_deployments_are_the_table_and_so_is_prefect_yaml() -> None:
    settings = _defaults()
    served = {d.name: d for d in deployments(settings)}
    declared = {d["name"]: d for d in yaml.safe_load(prefect_yaml(settings))["deployments"]}
    assert list(served) == list(declared) == [d.name for d in DEPLOYMENTS]
    for name, runner in served.items():
        entry = declared[name]
        assert runner.entrypoint == entry["entrypoint"], name
        assert runner.description == entry["description"], name
        assert [t.name for t in runner.triggers] == [t["name"] for t in entry.get("triggers", [])]
        schedules = [s.schedule for s in runner.schedules]
        for declared_schedule, schedule in zip(entry.get("schedules", []), schedules, strict=True):
            if "cron" in declared_schedule:
                assert schedule.cron == declared_schedule["cron"], name  # type: ignore[union-attr]
            else:
                seconds = schedule.interval.total_seconds()  # type: ignore[union-attr]
                assert seconds == declared_schedule["interval"], name


def test_every_flow_of_the_project_is_deployed() -> None:
    flows = set()
    for path in sorted((ROOT / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        flows |= {
            f"flows/{path.name}:{name}"
            for name, value in vars(module).items()
            if isinstance(value, Flow) and value.__module__ == module.__name__
        }
    assert flows == {d.entrypoint for d in DEPLOYMENTS}
