"""The export fanned out on a real Dask cluster (a scheduler and two worker processes on
loopback) through Prefect's Dask task runner, reporting to a real Prefect server: every part
imports the coordinator's snapshot, goes to the case's staging area, and the bundle is the one
a single process makes."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from flows import adapter
from flows.offboard import export_snapshot as export_task
from flows.offboard import package_bundle as package_task
from offboarding.core.records import BundleRef, CaseRef, ExportResult, Inventory
from offboarding.dev.services import DaskCluster, PrefectServer
from offboarding.export import export as stages
from offboarding.locations import scratch_dir
from offboarding.stores import open_store
from tests.conftest import Platform

pytestmark = pytest.mark.slow  # a Prefect server and a Dask cluster


@pytest.fixture(scope="module")
def server(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """The session's shared Prefect server, this process's client pointed at it."""
    with adapter.using_server(prefect_server.api_url, prefect_server.auth):
        yield prefect_server


def _environment(platform: Platform, server: PrefectServer) -> dict[str, str]:
    settings = platform.settings
    return {
        **{k: v for k, v in server.env().items() if k.startswith("PREFECT_")},
        "OFFBOARD_HOME": str(settings.home),
        "OFFBOARD_DATABASE_URL": platform.dsn,
        "OFFBOARD_DATAMAP": str(settings.datamap),
        "OFFBOARD_EXPORT_SPLIT_ROWS": "1000",
        "OFFBOARD_PARQUET_ROW_GROUP_ROWS": "1000",
    }


@pytest.fixture
def many_parts(platform: Platform) -> Platform:
    platform.query(
        "INSERT INTO chat_messages (id, tenant_id, space_id, author_id, sent_at, body) "
        "SELECT 50000000 + g, 'acme', s.id, NULL, now(), 'bulk ' || g "
        "FROM generate_series(1, 5000) g, LATERAL (SELECT id FROM spaces "
        "WHERE tenant_id = 'acme' ORDER BY id LIMIT 1) s"
    )
    return platform


def _manifest(bundle: BundleRef) -> dict[str, object]:
    with zipfile.ZipFile(bundle.parts[0].path) as archive:
        manifest: dict[str, object] = json.loads(archive.read("manifest.json"))
    return manifest


@contextmanager
def _on_cluster(
    platform: Platform,
    server: PrefectServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    worker_env: dict[str, str],
) -> Iterator[DaskCluster]:
    """A Dask cluster of two worker processes, this process's settings pointing at it."""
    environment = {**_environment(platform, server), **worker_env}
    cluster = DaskCluster(tmp_path / "dask", workers=2, env=environment)
    cluster.start()
    try:
        for name, value in {**environment, "OFFBOARD_EXPORT_CLUSTER": cluster.address}.items():
            monkeypatch.setenv(name, value)
        yield cluster
    finally:
        cluster.stop()


def _export(platform: Platform) -> tuple[ExportResult, Inventory, CaseRef]:
    settings = adapter.settings()
    case = platform.case("acme")
    stages.freeze(settings, case)
    inventory = stages.take_inventory(settings, case)
    staged = export_task(case, stages.stage(settings, case, "inventory", inventory))
    return stages.unstage(staged, ExportResult), inventory, case


def _distributed_export(
    platform: Platform,
    server: PrefectServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    worker_env: dict[str, str],
) -> tuple[ExportResult, Inventory, CaseRef, DaskCluster]:
    with _on_cluster(platform, server, tmp_path, monkeypatch, worker_env) as cluster:
        return (*_export(platform), cluster)


def test_a_distributed_export_gives_the_single_process_manifest(
    many_parts: Platform, server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = many_parts
    exported, inventory, case, _ = _distributed_export(platform, server, tmp_path, monkeypatch, {})
    settings = adapter.settings()
    tables = [p for p in exported.parts if p.kind == "table"]
    assert len(tables) > 8 and all(p.source.startswith("staged:") for p in tables)
    assert not list((scratch_dir(settings, case) / "parts").rglob("*.parquet"))  # all moved
    distributed = stages.package(settings, case, inventory, exported, record=False)
    stages.verify_package(settings, case, distributed, inventory, record=False)

    single = stages.export_snapshot(settings.replace(export={"cluster": ""}), case, inventory)
    assert all(p.source.startswith("scratch:") for p in single.parts if p.kind == "table")
    alone = stages.package(settings, case, inventory, single, record=False)
    got, want = _manifest(distributed), _manifest(alone)
    assert got["entries"] == want["entries"] and got["tables"] == want["tables"]

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="export-tables/"))
        )
    assert len(runs) == len(tables)
    assert {r.state.type.value for r in runs if r.state} == {"COMPLETED"}


def test_a_worker_killed_mid_part_is_replaced_and_the_bundle_verifies(
    many_parts: Platform, server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = many_parts
    marker = tmp_path / "killed-once"
    exported, inventory, case, cluster = _distributed_export(
        platform, server, tmp_path, monkeypatch,
        {"OFFBOARD_FAULT": "export:part-written#3", "OFFBOARD_FAULT_MODE": "kill",
         "OFFBOARD_FAULT_ONCE": str(marker)},
    )  # fmt: skip
    assert marker.exists()
    assert "killed by signal 9" in (cluster.home / "workers.log").read_text()
    settings = adapter.settings()
    paths = [p.path for p in exported.parts]
    assert len(paths) == len(set(paths))  # no part twice
    store, prefix = stages.staging_area(settings, case)
    staged = sorted(o.key.removeprefix(prefix) for o in store.list_objects(prefix))
    assert staged == sorted(p.path for p in exported.parts if p.source.startswith("staged:"))
    bundle = stages.package(settings, case, inventory, exported, record=False)
    rows = stages.verify_package(settings, case, bundle, inventory, record=False)
    assert rows == inventory.total_rows
    assert os.environ["OFFBOARD_EXPORT_CLUSTER"] == cluster.address


def test_the_bundles_parts_are_written_by_the_clusters_workers_and_verify(
    many_parts: Platform, server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of a few kilobytes: the manifest planned and signed here, each part a task run on
    a worker, which checks every entry against the signed plan as it writes it; the parts in
    the delivery store verify and carry the entries a single process writes."""
    platform = many_parts
    with _on_cluster(
        platform, server, tmp_path, monkeypatch, {"OFFBOARD_BUNDLE_PART_BYTES": "20000"}
    ):
        monkeypatch.setenv("OFFBOARD_BUNDLE_PART_BYTES", "20000")
        exported, inventory, case = _export(platform)
        staged = {
            name: stages.stage(adapter.settings(), case, name, record)
            for name, record in (("inventory", inventory), ("export", exported))
        }
        bundle = package_task(case, staged["inventory"], staged["export"])
    settings = adapter.settings()
    assert len(bundle.parts) >= 3 and bundle.store_url
    assert stages.verify_package(settings, case, bundle, inventory) == inventory.total_rows
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="package-offboarding-"))
        )
    # Parts reading the coordinator's scratch (a location that wrote its parts there) are
    # written by the coordinator; every other part by a worker, once.
    away = {r.name.removeprefix("package-") for r in runs}
    assert {r.state.type.value for r in runs if r.state} == {"COMPLETED"}
    assert len(away) == len(runs) and 0 < len(away) <= len(bundle.parts)
    assert away <= {Path(p.path).name for p in bundle.parts}
    alone = stages.package(settings, case, inventory, exported, record=False)
    with zipfile.ZipFile(alone.parts[0].path) as archive:
        want = json.loads(archive.read("manifest.json"))
    store = open_store(bundle.store_url)
    with store.open_read(bundle.parts[0].path) as body, zipfile.ZipFile(body) as archive:
        got = json.loads(archive.read("manifest.json"))
    assert got["entries"] == want["entries"] and got["parts"] == want["parts"]
