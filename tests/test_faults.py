"""Crashes at every stage boundary and inside streaming steps, then a rerun: the case completes,
the manifest equals an uninterrupted run's, no row is lost or duplicated, and exactly one link
and one certificate exist. Most crashes are an exception no code catches (`InjectedCrash`);
two are a real SIGKILL of a child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from offboarding.backup.backup import restore_check, take_backup
from offboarding.core.faults import InjectedCrash
from offboarding.core.records import CaseRef
from offboarding.core.signing import Signer, load_public_key
from offboarding.delivery.mail import read_outbox
from offboarding.evidence.archive import verify_archive
from offboarding.locations.backups import backup_prefix
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

CASE = CaseRef(tenant="acme", case_id="acme-0123456789ab")

EXPORT_POINTS = [
    "export:part-written#2",  # mid-export, after the second Parquet part
    "bundle:chunk-written#3",  # mid-file, while streaming into the ZIP
    "bundle:part-written",  # a ZIP part in the delivery store, the packaging not recorded
    "deliver:part-uploaded",  # mid-upload, before the upload is recorded
    "deliver:notice-sent",  # after the e-mail, before it is recorded
    "audit:signature-written#2",  # between an audit event's signature and its body
    "audit:signature-written#5",
]


def manifest_of(bundle: Path) -> dict[str, Any]:
    with zipfile.ZipFile(bundle) as archive:
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    manifest.pop("snapshot_time", None)  # the one timestamp the manifest declares
    manifest.pop("signing_key", None)  # each test platform has its own key
    return manifest


# The reference runs on a twin platform: the registry row carries its own freeze time, and the
# checksum list follows from the entries; everything else must be byte-identical.
_TWIN_DIFFERS = {"tables/public.tenants/part-00000.parquet", "SHA256SUMS"}


def same_bundle(got: dict[str, Any], reference: dict[str, Any]) -> bool:
    def entries(manifest: dict[str, Any]) -> dict[str, Any]:
        return {e["path"]: e for e in manifest["entries"] if e["path"] not in _TWIN_DIFFERS}

    rest = {k: v for k, v in got.items() if k != "entries"}
    return entries(got) == entries(reference) and rest == {
        k: v for k, v in reference.items() if k != "entries"
    }


def delivery_links(platform: Platform) -> set[str]:
    links: set[str] = set()
    for message in (platform.settings.root / "outbox").glob("*-delivery-*.eml"):
        body = read_outbox(message).get_content()
        links |= {line.strip() for line in body.splitlines() if "/d/" in line}
    return links


@pytest.fixture
def reference(make_platform: Callable[[], Platform]) -> dict[str, Any]:
    """The manifest of an uninterrupted run of the same case on an identical platform."""
    platform = make_platform()
    _, _, bundle = export_and_deliver(platform, CASE)
    return manifest_of(bundle)


@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_a_crash_while_exporting_or_delivering_then_a_rerun_gives_the_same_bundle_and_one_link(
    make_platform: Callable[[], Platform],
    reference: dict[str, Any],
    point: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    platform = make_platform()
    monkeypatch.setenv("OFFBOARD_FAULT", point)
    with pytest.raises(InjectedCrash):
        export_and_deliver(platform, CASE)
    monkeypatch.delenv("OFFBOARD_FAULT")
    inventory, _, bundle = export_and_deliver(platform, CASE)

    assert same_bundle(manifest_of(bundle), reference)
    rows = {t["name"]: t["rows"] for t in reference["tables"]}
    assert rows == {t.qualified: t.rows for t in inventory.tables}
    assert len(delivery_links(platform)) == 1
    public_key = load_public_key(Signer.load_or_create(platform.settings.keys_dir).public_pem)
    verify_archive(open_store(platform.settings.store_url("archive")), public_key)


def test_a_crash_while_sealing_a_backup_then_a_rerun_leaves_one_complete_backup(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFBOARD_FAULT", "backup:part-sealed")
    with pytest.raises(InjectedCrash):
        take_backup(platform.settings, "globex")
    monkeypatch.delenv("OFFBOARD_FAULT")
    take_backup(platform.settings, "globex")
    for url in platform.settings.backup_store_urls():
        keys = [o.key for o in open_store(url).list_objects(backup_prefix("globex"))]
        assert sum(k.endswith("/backup.json") for k in keys) == 1
    assert len(restore_check(platform.settings, "globex")) == 2
    assert not list((platform.settings.scratch_root / "globex").rglob("*.zip"))


def child(platform: Platform, stage: str, fault: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OFFBOARD_HOME": str(platform.settings.home),
        "OFFBOARD_DATABASE_URL": platform.dsn,
        "OFFBOARD_DATAMAP": str(platform.settings.datamap),
        "OFFBOARD_FAULT": fault,
        "OFFBOARD_FAULT_MODE": "kill",
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.fault_child", stage, CASE.tenant, CASE.case_id],
        env=env, capture_output=True, text=True, timeout=300, check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip


def test_a_worker_killed_mid_table_and_mid_delete_loses_nothing(
    make_platform: Callable[[], Platform], reference: dict[str, Any]
) -> None:
    platform = make_platform()
    neighbours = platform.fingerprint("globex")
    killed = child(platform, "offboard", "export:part-written#3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _, _, bundle = export_and_deliver(platform, CASE)
    assert same_bundle(manifest_of(bundle), reference)

    killed = child(platform, "destroy", "postgres:batch-deleted#2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    archived = destroy_everything(platform, CASE)
    left = platform.fingerprint("acme")
    assert all(t["rows"] == 0 for t in left["tables"].values())  # type: ignore[attr-defined]
    assert platform.fingerprint("globex") == neighbours
    certificates = list(
        (platform.settings.root / "stores" / "archive").glob("certificates/*/*.json")
    )
    assert [p.name for p in certificates] == [Path(archived.key).name]
